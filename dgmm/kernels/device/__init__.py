"""The kernels' twins for arrays on a device: written once against the Python array API (CuPy on a GPU, torch,
array-api-strict), and the fused CUDA E-step for CuPy arrays.

Each computes what its NumPy kernel in :mod:`dgmm.kernels` computes, in the same forms, so both round alike;
the NumPy kernels stay the CPU engines and the oracle. Modules here import :mod:`dgmm.kernels`, never the
reverse: the choice between a kernel and its twin is made once, above both (:class:`dgmm.kernels.arrays.ByBackend`).
"""
