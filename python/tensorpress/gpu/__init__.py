"""Decode tensorpress data straight into GPU memory: entropy streams with Triton kernels, byte
planes merged and blockwise codes dequantized with torch on the device.

Only the compressed bytes cross the bus. :mod:`tensorpress.gpu.layerwise` keeps a model's weights
compressed in device memory and decodes each layer just before it runs.

Integrity guarantee: **every CRC32C of a stream (its header and each chunk) is verified on the
CPU, before anything is uploaded**, together with every other header, table and chunk-framing
field (docs/format.md §1); a stream that fails raises the same error class the CPU decoder
raises (FormatError, ChecksumError, CorruptDataError) and nothing is allocated on the device.
The kernels then check what only decoding can show: codes no encoder writes and lanes not
consumed to exactly their last byte, reported as CorruptDataError. The kernels never read or
write outside their buffers, whatever the bytes say.

Triton and torch are optional; without a GPU the kernels run on CPU tensors when
``TRITON_INTERPRET=1`` is set before Triton is first imported (that is how the tests run them):

>>> import numpy as np, tensorpress.entropy as te, tensorpress.gpu as tg  # doctest: +SKIP
>>> blob = te.encode(np.arange(5000, dtype=np.uint8) % 7, codec="huffman")  # doctest: +SKIP
>>> tg.decode(blob, device="cuda")[:4]  # doctest: +SKIP
tensor([0, 1, 2, 3], device='cuda:0', dtype=torch.uint8)
"""

from __future__ import annotations

from tensorpress.gpu import layerwise
from tensorpress.gpu.decoder import BACKENDS, DeviceStream, decode, upload
from tensorpress.gpu.planes import dequantize_blockwise, merge_planes, unpack_codes
from tensorpress.gpu.tensors import decode_blockwise, decode_planes

__all__ = [
    "BACKENDS",
    "DeviceStream",
    "decode",
    "decode_blockwise",
    "decode_planes",
    "dequantize_blockwise",
    "layerwise",
    "merge_planes",
    "unpack_codes",
    "upload",
]
