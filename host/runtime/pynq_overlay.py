"""``SenteiOverlay``: the sentei bitstream as a ``pynq.Overlay``, with a model loaded and frames run on it.

What DPU-PYNQ's ``DpuOverlay`` is for the DPU::

    from sentei.host.runtime.pynq_overlay import SenteiOverlay

    ol = SenteiOverlay()                  # the installed bitstream for $BOARD, downloaded to the PL
    ol.ip_dict["sentei_top_0"]["type"]    # 'sentei.org:hls:sentei_top:1.0'
    ol.sentei_top_0.register_map          # PYNQ's view of docs/register-map.md
    ol.load_model("camvid-small")         # a .sentei file or a bundled model: weights loaded once
    labels = ol.run(frame)                # uint8 class per pixel
    results = ol.run_batch(frames)        # one RUN_FRAME for the whole batch
    ol.close()                            # frees the buffers and the board lock

It adds no second path to the accelerator: the bitstream is found by
:func:`sentei.host.runtime.driver.find_bitstream` (``bitfile``, ``$SENTEI_BITSTREAM``, the one installed
in ``sentei/overlay/bitstreams/<board>/`` or linked there by PYNQ ``.link`` files, downloaded on
first use), the IP is the ``SenteiIP`` PYNQ binds by VLNV (:mod:`sentei.host.runtime.pynq_ip`), and a
model runs through a :class:`~sentei.host.runtime.segmenter.Segmenter` on this overlay (the board lock,
the register-map and ``network.json`` checks, the buffers, every wait with its timeout).

This module imports pynq at its top: import it only where pynq is installed
(``from sentei.host import SenteiOverlay`` imports it on first use).
"""
from __future__ import annotations

import os

import pynq

from sentei.errors import SenteiError
from sentei.host.runtime import driver as drv
from sentei.host.runtime import pynq_ip  # noqa: F401  -- registers SenteiIP before any overlay binds its drivers
from sentei.host.runtime.segmenter import Segmenter


def missing_bitstream_message() -> str:
    """The one line said when no sentei bitstream can be found."""
    return (f"no sentei bitstream is installed for this board ($BOARD={os.environ.get('BOARD', 'unset')}): "
            f"pass SenteiOverlay('path/sentei.bit'), set ${drv.BITSTREAM_ENV}, or install sentei.bit, sentei.hwh "
            f"and network.json (or their .link files) in sentei/overlay/bitstreams/<board>/ (docs/build.md)")


class SenteiOverlay(pynq.Overlay):
    """The sentei overlay: downloads the bitstream, loads a model, runs frames.

    Parameters
    ----------
    bitfile : str or Path, optional
        The ``.bit`` (its ``.hwh`` and ``network.json`` beside it); default ``$SENTEI_BITSTREAM``
        or the installed one for ``$BOARD``, downloaded first if it is only linked.
    model : Model, str or Path, optional
        A model to load at once (:meth:`load_model`).
    download : bool
        Program the PL (``pynq.Overlay``'s ``download``); False to attach to a loaded one.
    batch, timeout, fit :
        Passed to the :class:`~sentei.host.runtime.segmenter.Segmenter` of :meth:`load_model`.
    **kwargs :
        Passed to ``pynq.Overlay`` (``dtbo``, ``ignore_version``, ``device``).

    Raises
    ------
    SenteiError
        No bitstream (one line: :func:`missing_bitstream_message`), or a model the bitstream
        was not built for.
    """

    def __init__(self, bitfile=None, model=None, *, download: bool = True, batch: int = 1,
                 timeout: float | None = None, fit: str = "stretch", **kwargs):
        self.segmenter = None  # set first: pynq.Overlay.__getattr__ answers unknown names with IP lookups
        path = drv.find_bitstream(bitfile, fetch=True)
        if path is None:
            raise SenteiError(missing_bitstream_message())
        super().__init__(str(path), download=download, **kwargs)
        self.ip_name = drv.find_ip(self)
        if model is not None:
            self.load_model(model, batch=batch, timeout=timeout, fit=fit)

    @property
    def accelerator(self):
        """The accelerator's driver: the ``SenteiIP`` PYNQ bound to ``sentei_top_0``."""
        return getattr(self, self.ip_name)

    @property
    def register_map(self):
        """PYNQ's register map of the accelerator, parsed from the ``.hwh`` (docs/register-map.md)."""
        return self.accelerator.register_map

    def load_model(self, model=None, *, batch: int = 1, timeout: float | None = None,
                   fit: str = "stretch") -> Segmenter:
        """Load ``model``'s weights onto the accelerator (once); replaces the model loaded before.

        ``model``: a :class:`~sentei.host.modelfile.schema.Model`, a ``.sentei`` file or a bundled model's
        name (None: the default bundled model); it must be the network the bitstream was built
        for (``network.json``). Returns the :class:`~sentei.host.runtime.segmenter.Segmenter` that runs it.
        """
        self.close()
        self.segmenter = Segmenter(model, overlay=self, batch=batch, timeout=timeout, fit=fit)
        return self.segmenter

    def _loaded(self) -> Segmenter:
        if self.segmenter is None or self.segmenter.closed:
            raise SenteiError("no model is loaded on the overlay: call load_model(model) first")
        return self.segmenter

    def run(self, frame):
        """uint8 labels ``[H, W]`` of one RGB frame (any size), computed on the accelerator."""
        return self._loaded()(frame)

    def run_batch(self, frames, labels: bool = True):
        """:class:`~sentei.host.runtime.segmenter.SegmentedFrame` of each frame, all in one accelerator start."""
        return self._loaded().segment_batch(frames, labels=labels)

    def stream(self, frames, **kwargs):
        """Frames in, results out, the next frame prepared while one runs (``Segmenter.stream``)."""
        return self._loaded().stream(frames, **kwargs)

    def close(self) -> None:
        """Free the model's buffers and the board lock (idempotent); the bitstream stays loaded."""
        seg, self.segmenter = self.segmenter, None
        if seg is not None:
            seg.close()

    def free(self):
        self.close()
        super().free()

    def __enter__(self) -> "SenteiOverlay":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
