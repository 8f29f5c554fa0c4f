"""Evaluation metrics: FID, KID, precision/recall/density/coverage, MS-SWD and memorization, offline.

`metric_utils` holds the image sources, clean-fid input protocol, feature extraction and cache;
one module per metric; `evaluate.evaluate` runs a list of them and returns a JSON-able dict.
"""

from stylemri.metrics.evaluate import METRICS, parse_metrics  # evaluate() itself: stylemri.metrics.evaluate.evaluate
from stylemri.metrics.inception import find_weights, load_inception
from stylemri.metrics.metric_utils import (
    FeatureStats, ImageSource, extract_features, protocol_description, resize_for_inception, source_from_array,
    source_from_dataset, source_features,
)

__all__ = [
    "METRICS", "parse_metrics", "find_weights", "load_inception", "FeatureStats", "ImageSource",
    "extract_features", "protocol_description", "resize_for_inception", "source_from_array",
    "source_from_dataset", "source_features",
]
