"""Read a PyTorch `.pth` state_dict without PyTorch and without executing pickled code.

`torch.save` (zip format, PyTorch >= 1.6) writes `data.pkl` plus one raw file per storage. This reader
unpickles `data.pkl` with an allow-list of exactly the globals a plain state_dict needs (OrderedDict,
tensor rebuild functions, storage types) - the same guarantee as `torch.load(weights_only=True)` -
and builds numpy arrays from the raw storages. Anything else in the pickle is refused.
"""
import collections
import io
import pickle
import zipfile

import numpy as np

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for something a plain state_dict never contains."""


class _StorageType:
    def __init__(self, name):
        self.name = name


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    del requires_grad, hooks, metadata
    itemsize = storage.dtype.itemsize
    if not size:
        return np.array(storage[offset], copy=True)
    return np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)).copy()


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    del requires_grad, hooks
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, data, storage_reader):
        super().__init__(io.BytesIO(data))
        self._read_storage = storage_reader

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(f"refusing to load global {module}.{name}: not part of a plain state_dict")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise UnsafePickleError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        return self._read_storage(str(key), _STORAGE_DTYPES[storage_type.name], int(numel))


def is_zip_checkpoint(path) -> bool:
    return zipfile.is_zipfile(path)


def load_zip_state_dict(path):
    """-> the unpickled object of a zip-format `.pth` (tensors as numpy arrays)."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise pickle.UnpicklingError("zip archive has no single data.pkl: not a torch.save file")
        root = pkl[0][: -len("data.pkl")]
        byteorder = "little"
        if root + "byteorder" in names:
            byteorder = zf.read(root + "byteorder").decode().strip()
        cache = {}

        def read_storage(key, dtype, numel):
            if key not in cache:
                raw = zf.read(f"{root}data/{key}")
                dt = np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">")
                arr = np.frombuffer(raw, dtype=dt)
                if arr.size < numel:
                    raise pickle.UnpicklingError(f"storage {key} holds {arr.size} values, expected {numel}")
                cache[key] = arr.astype(np.dtype(dtype))
            return cache[key]

        return _StateDictUnpickler(zf.read(pkl[0]), read_storage).load()
