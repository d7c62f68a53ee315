"""Headless OpenGL backend selection and the one offscreen renderer each env owns.

MuJoCo reads `MUJOCO_GL` once, when `mujoco` is first imported, so the backend must be chosen before that
import. `select_backend()` is called at the top of `robot_si.envs` (before anything imports mujoco): when
`MUJOCO_GL` is unset it picks EGL if `libEGL` loads, else OSMesa if `libOSMesa` loads. If mujoco was already
imported without `MUJOCO_GL` (it then defaults to GLFW, which needs a display), mujoco's context factory is
pointed at the headless backend instead. If neither loads,
rendering raises a `RuntimeError` naming the system package to install (`libegl1` or `libosmesa6`).

`FrameRenderer` wraps one reusable `mujoco.Renderer` with shadows, reflections and skybox switched off
(shadows alone cost ~25x in frame rate with the software rasterizer) and renders named cameras to uint8 frames.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import sys
import weakref

import numpy as np

SUPPORTED_BACKENDS = ("egl", "osmesa")
_LIBRARY_CANDIDATES = {
    "egl": ("libEGL.so.1", "libEGL.so"),
    "osmesa": ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so"),
}
_INSTALL_HINT = {"egl": "libegl1 (apt-get install libegl1)", "osmesa": "libosmesa6 (apt-get install libosmesa6)"}


def _library_loads(backend: str) -> bool:
    names = list(_LIBRARY_CANDIDATES[backend])
    found = ctypes.util.find_library("EGL" if backend == "egl" else "OSMesa")
    if found:
        names.insert(0, found)
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def active_backend() -> str | None:
    """The backend mujoco uses in this process (`MUJOCO_GL`), or None before one was chosen."""
    value = os.environ.get("MUJOCO_GL", "").strip().lower()
    return value or None


def select_backend(requested: str | None = None) -> str | None:
    """Choose the headless GL backend; call before `import mujoco`. Returns the backend in effect.

    `requested` (`"egl"` / `"osmesa"` / None for automatic) can only be honoured while mujoco is not imported
    yet or when it matches the backend already in effect; otherwise this raises ValueError with the fix.
    """
    if requested is not None and requested not in SUPPORTED_BACKENDS:
        raise ValueError(f"render_backend={requested!r} is not supported; use one of {SUPPORTED_BACKENDS} or None")
    # Mesa's software rasterizer (llvmpipe, what EGL/OSMesa use without a GPU) starts one render thread per core.
    # A 64 px frame is too small to split: rendering in the calling thread (0) was faster in every row of the
    # collection benchmark than one thread per core, and leaves the other cores to the policy and the background
    # store writer (bench/results/collect_throughput.json, 2026-12-02). A value the user set is kept.
    os.environ.setdefault("LP_NUM_THREADS", "0")
    current = active_backend()
    mujoco_imported = "mujoco" in sys.modules
    if requested is not None:
        if current == requested:
            return current
        if mujoco_imported:
            raise ValueError(
                f"render_backend={requested!r} was asked for but mujoco is already imported with "
                f"MUJOCO_GL={current!r}; set the environment variable MUJOCO_GL={requested} before starting Python"
            )
        os.environ["MUJOCO_GL"] = requested
        os.environ.setdefault("PYOPENGL_PLATFORM", requested)
        return requested
    if current is not None:
        return current
    for backend in SUPPORTED_BACKENDS:
        if _library_loads(backend):
            if mujoco_imported:
                return _switch_imported_mujoco(backend)
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    return None  # FrameRenderer raises the install hint when a frame is first needed.


def _switch_imported_mujoco(backend: str) -> str | None:
    """mujoco was imported before us without MUJOCO_GL, so it picked GLFW (needs a display). Point its
    context factory at the headless backend instead; this works while PyOpenGL has not bound a platform."""
    import importlib

    import mujoco.gl_context

    try:
        module = importlib.import_module(f"mujoco.{backend}")
    except ImportError:
        return None  # PyOpenGL already bound to another platform; FrameRenderer explains the fix.
    mujoco.gl_context.GLContext = module.GLContext
    os.environ["MUJOCO_GL"] = backend
    return backend


def _missing_gl_error(cause: BaseException | None) -> RuntimeError:
    backend = active_backend()
    hints = " or ".join(_INSTALL_HINT.values())
    return RuntimeError(
        f"cannot create a headless OpenGL context (MUJOCO_GL={backend!r}, error: {cause!r}). Install {hints}, "
        "or set MUJOCO_GL=egl / MUJOCO_GL=osmesa before starting Python"
    )


_LIVE_RENDERERS: "weakref.WeakSet[FrameRenderer]" = weakref.WeakSet()


def _close_live_renderers() -> None:
    # Free GL contexts before the EGL display is torn down at exit; otherwise the garbage collector frees them
    # afterwards and prints EGL errors.
    for renderer in list(_LIVE_RENDERERS):
        renderer.close()


class FrameRenderer:
    """One offscreen renderer for one model, reused for every frame of every camera of an env."""

    def __init__(self, model, image_size: int):
        import mujoco

        if active_backend() not in SUPPORTED_BACKENDS:
            raise _missing_gl_error(None)
        try:
            self._renderer = mujoco.Renderer(model, height=image_size, width=image_size)
        except Exception as error:  # noqa: BLE001 - GL failures surface as many exception types
            raise _missing_gl_error(error) from error
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False
        self.image_size = image_size
        if not _LIVE_RENDERERS:
            # Registered after mujoco's own EGL atexit hook so that it runs first (atexit is last-in first-out).
            atexit.unregister(_close_live_renderers)
            atexit.register(_close_live_renderers)
        _LIVE_RENDERERS.add(self)

    def render(self, data, camera: str) -> np.ndarray:
        """Render `camera` for the current `data` as an upright uint8 (H, W, 3) frame (row 0 = top)."""
        self._renderer.update_scene(data, camera=camera)
        return self._renderer.render()

    def close(self) -> None:
        renderer, self._renderer = getattr(self, "_renderer", None), None
        if renderer is not None:
            renderer.close()
