"""The data layer: any brain-MRI source -> prepared uint8 cache -> training-ready tensors in [-1, 1].

    ds = load_dataset(DataConfig(source="builtin:mni152", resolution=64))
    images, labels = ds.batch([0, 1, 2])                 # (3, 1, 64, 64) float32, int64
    for images, labels in InfiniteLoader(ds, 32, seed=0):  # endless, deterministic, resumable
        ...
"""

from stylemri.data.cache import cache_root
from stylemri.data.dataset import DataReport, MRIDataset, SampleInfo, load_dataset, to_float
from stylemri.data.loader import InfiniteLoader, StreamOrder
from stylemri.data.resample import area_downsample
from stylemri.data.sources import mni152_path, scan_source

__all__ = [
    "load_dataset", "MRIDataset", "DataReport", "SampleInfo", "InfiniteLoader", "StreamOrder",
    "area_downsample", "to_float", "cache_root", "mni152_path", "scan_source",
]
