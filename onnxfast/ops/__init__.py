"""Numpy kernels of the ai.onnx domain; importing this package registers them."""

from . import attention, detection, image, loss, math, ml, nn, reduce, rnn, sequence, signal, tensor, text  # noqa: F401
from . import ml_maps, ml_svm  # noqa: E402,F401  (ai.onnx.ml: DictVectorizer / CastMap / FeatureVectorizer, SVMs)
from . import contrib, contrib_attention, contrib_quant, fused  # noqa: E402,F401  (com.microsoft and internal onnxfast-domain kernels)
