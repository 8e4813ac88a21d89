"""The ``ai.onnx.ml`` operators (what sklearn converters emit), one family in three modules:
classic.py (LabelEncoder, tree ensembles, linear models, preprocessing), svm.py (SVMClassifier,
SVMRegressor) and maps.py (ZipMap, CastMap, DictVectorizer, CategoryMapper)."""
from . import classic, maps, svm  # noqa: F401  (each registers its ops on import)
