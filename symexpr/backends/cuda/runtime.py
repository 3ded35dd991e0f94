"""Running compiled CUDA modules through CuPy: devices, device arrays, launches and host steps.

Nothing here runs at ``function()`` time: compiling needs only NVRTC, so a
machine without a GPU renders and compile-checks every kernel and raises
:class:`NoDeviceError` when called.
"""

from __future__ import annotations

import functools

import numpy as np

from symexpr.backends.cuda.codegen import BLOCK
from symexpr.graph.basic import Constant
from symexpr.ops.messages import node_error

#: Blocks a grid-stride kernel launches at most (each block loops over the rest).
MAX_BLOCKS = 1 << 16


class NoDeviceError(RuntimeError):
    """A cuda-backend function was called where no CUDA device (or no CuPy) is available."""


@functools.lru_cache(maxsize=1)
def _device_count() -> int:
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device: all mean "none here"
        return 0


def device_available() -> bool:
    """Whether a CUDA device can run kernels in this process."""
    return _device_count() > 0


def device_arch() -> str | None:
    """``sm_XY`` of the current device (``sm_90a`` for compute capability 9.0), or None without one."""
    if not device_available():
        return None
    import cupy

    major, minor = cupy.cuda.Device().compute_capability[0], cupy.cuda.Device().compute_capability[1:]
    arch = f"sm_{major}{minor}"
    return arch + "a" if arch == "sm_90" else arch


def require_device(what: str) -> None:
    if not device_available():
        raise NoDeviceError(
            f"{what}: backend 'cuda' compiled this function (see f.source) but no CUDA device is available "
            "here (CuPy found none); run it on a machine with a GPU, or use backend='llvm'"
        )


class LoadedModule:
    """A cubin loaded on the current device, with one launcher per kernel."""

    def __init__(self, cubin: bytes, infos):
        self.infos = infos
        self._module = _module_from_cubin(cubin)
        self.kernels = [self._module.get_function(info.name) for info in infos]


def _module_from_cubin(cubin: bytes):
    import os
    import tempfile

    import cupy

    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as handle:
        handle.write(cubin)
        path = handle.name
    try:
        module = cupy.RawModule(path=path)
        module.get_function  # noqa: B018 - loads now, while the file exists
        return module
    finally:
        os.unlink(path)


def _grid(info, params) -> int:
    value = lambda e: int(params[e.index]) if hasattr(e, "index") else int(e)  # noqa: E731
    outer = int(np.prod([value(e) for e in info.outer], dtype=np.int64)) if info.outer else 1
    if info.mapping == "rows":
        return max(1, min(outer, MAX_BLOCKS))
    inner = int(np.prod([value(e) for e in info.inner], dtype=np.int64)) if info.inner else 1
    return max(1, min((outer * inner + BLOCK - 1) // BLOCK, MAX_BLOCKS))


class CUDAExecutable:
    """One call geometry's plan on the device: outputs, arena, kernel launches and host steps."""

    def __init__(self, fgraph, plan, schedule, module, params):
        self.fgraph = fgraph
        self.plan = plan
        self.module = module
        self.params = params
        self.schedule = schedule
        self._device_constants = None
        self._input_index = {id(v): i for i, v in enumerate(fgraph.inputs)}

    def _buffers(self, args, outs, arena):
        import cupy

        if self._device_constants is None:
            self._device_constants = [cupy.asarray(np.ascontiguousarray(c)) for c in self.plan.constants]
        arrays = []
        for spec in self.plan.buffers:
            if spec.kind == "input":
                arrays.append(args[spec.index])
            elif spec.kind == "output":
                arrays.append(outs[spec.index])
            elif spec.kind == "const":
                arrays.append(self._device_constants[spec.index])
            else:
                arrays.append(arena[spec.index : spec.index + spec.nbytes].view(spec.dtype))
        return arrays

    def run(self, args):
        import cupy

        require_device("calling the function")
        outs = [cupy.empty(shape, dtype=dtype) for _, shape, dtype in self.plan.outputs]
        arena = cupy.empty(max(self.plan.arena_bytes, 1), dtype=np.uint8)
        buffers = self._buffers(args, outs, arena)
        native = 0
        for kind, item in self.schedule:
            if kind == "native":
                info, kernel = self.module.infos[native], self.module.kernels[native]
                native += 1
                kargs = [buffers[b] for b in info.buffers] + [np.int64(self.params[i]) for i in info.params]
                kernel((_grid(info, self.params),), (BLOCK,), tuple(kargs))
            else:
                self._host(item, args, buffers)
        order = [self.plan.buffers[b].index for b, _, _ in self.plan.outputs]
        return [outs[i] for i in order]

    def _view(self, var, args, buffers):
        if isinstance(var, Constant):
            return np.asarray(var.data)
        if id(var) in self._input_index:
            return args[self._input_index[id(var)]]
        view = self.plan.views[id(var)]
        flat = buffers[view.buffer].reshape(-1)
        itemsize = flat.dtype.itemsize
        from cupy.lib.stride_tricks import as_strided

        return as_strided(flat[view.offset :], shape=view.shape, strides=tuple(s * itemsize for s in view.strides))

    def _host(self, step, args, buffers):
        import cupy

        node = step.node
        inputs = [cupy.asnumpy(self._view(v, args, buffers)) for v in node.inputs]
        try:
            with np.errstate(all="ignore"):
                results = node.op.perform(node, inputs)
        except Exception as exc:
            raise node_error(node, inputs, exc) from exc
        for var, result in zip(node.outputs, results):
            dest = self._view(var, args, buffers)
            dest[...] = cupy.asarray(np.asarray(result, dtype=dest.dtype))
