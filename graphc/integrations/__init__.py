"""Bridges from graphc to other systems (each module needs its own optional packages): ``ray`` (Ray Data)."""
