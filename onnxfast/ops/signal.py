"""Signal processing operators: DFT (opset 17 and 20), STFT, MelWeightMatrix."""

from __future__ import annotations

import numpy as np

from .. import errors
from ..dtypes import np_dtype
from ..registry import op
from ._common import check_alloc, invalid


def _scalar_int(node, x, what):
    a = np.asarray(x)
    if a.size != 1 or a.dtype.kind not in "iu":
        invalid(node, f"{what} must be an integer scalar, got {a.dtype} of shape {a.shape}")
    return int(a.reshape(-1)[0])


def _as_complex(node, x):
    """(..., 1 | 2) real/complex representation -> complex array (...), complex dtype."""
    if x.ndim < 2 or x.shape[-1] not in (1, 2):
        invalid(node, f"input must have rank >= 2 and a last dimension of 1 (real) or 2 (complex), "
                f"got shape {x.shape}")
    cd = np.complex128 if x.dtype == np.float64 else np.complex64
    fd = np.float64 if x.dtype == np.float64 else np.float32
    xf = x.astype(fd, copy=False)
    if x.shape[-1] == 1:
        return xf[..., 0], True, cd
    return (xf[..., 0] + 1j * xf[..., 1]).astype(cd), False, cd


def _pack(y, dt):
    """complex (...) -> (..., 2) in dtype dt."""
    out = np.empty(y.shape + (2,), dtype=dt)
    out[..., 0] = y.real
    out[..., 1] = y.imag
    return out


def _dft(node, x, n, ax, inverse, onesided):
    sig, real, _ = _as_complex(node, x)
    if inverse:
        if onesided:  # one-sided spectrum -> real signal of length n
            y = np.fft.irfft(sig, n=n, axis=ax)
            return y[..., None].astype(x.dtype, copy=False)
        return _pack(np.fft.ifft(sig, n=n, axis=ax), x.dtype)
    if onesided and real:
        y = np.fft.rfft(sig, n=n, axis=ax)
    else:
        y = np.fft.fft(sig, n=n, axis=ax)
        if onesided:
            y = np.take(y, np.arange(n // 2 + 1), axis=ax)
    return _pack(y, x.dtype)


def _dft_factory(axis_from_input):
    def factory(node):
        inverse = bool(node.attr("inverse", 0))
        onesided = bool(node.attr("onesided", 0))
        axis_attr = int(node.attr("axis", 1))

        def run(x, dft_length=None, axis=None):
            r = x.ndim
            if r < 2:
                invalid(node, f"input must have rank >= 2, got shape {x.shape}")
            if axis_from_input:
                a = -2 if axis is None else _scalar_int(node, axis, "axis")
            else:
                a = axis_attr
            if a < -r or a >= r:
                invalid(node, f"axis {a} is out of range for an input of rank {r}")
            ax = a % r
            if ax == r - 1:
                invalid(node, f"axis {a} is the real/imaginary dimension; it must name a signal axis")
            if dft_length is not None:
                n = _scalar_int(node, dft_length, "dft_length")
            elif inverse and onesided:
                n = 2 * (x.shape[ax] - 1)
            else:
                n = x.shape[ax]
            if n <= 0:
                invalid(node, f"dft_length must be positive, got {n}")
            shape = list(x.shape)
            shape[ax] = n // 2 + 1 if onesided and not inverse else n
            check_alloc(shape, x.dtype, node)
            return _dft(node, x, n, ax, inverse, onesided)

        return run

    return factory


op("DFT", since=17)(_dft_factory(False))
op("DFT", since=20)(_dft_factory(True))


@op("STFT", since=17)
def stft_17(node):
    onesided = bool(node.attr("onesided", 1))

    def run(signal, frame_step, window=None, frame_length=None):
        if signal.ndim != 3 or signal.shape[-1] not in (1, 2):
            invalid(node, f"signal must have shape (batch, length, 1 or 2), got {signal.shape}")
        step = _scalar_int(node, frame_step, "frame_step")
        if step <= 0:
            invalid(node, f"frame_step must be positive, got {step}")
        if frame_length is not None:
            fl = _scalar_int(node, frame_length, "frame_length")
            if window is not None and window.shape != (fl,):
                invalid(node, f"window of shape {window.shape} does not match frame_length {fl}")
        elif window is not None:
            if window.ndim != 1:
                invalid(node, f"window must be 1-D, got shape {window.shape}")
            fl = window.shape[0]
        else:
            fl = signal.shape[1]
        length = signal.shape[1]
        if fl <= 0 or fl > length:
            invalid(node, f"frame length {fl} must lie in [1, {length}] (the signal length)")
        nframes = 1 + (length - fl) // step
        sig, real, cd = _as_complex(node, signal)  # (batch, length)
        idx = np.arange(nframes)[:, None] * step + np.arange(fl)[None, :]
        frames = sig[:, idx]  # (batch, frames, fl)
        if window is not None:
            frames = frames * window.astype(frames.real.dtype, copy=False)
        if onesided and real:
            y = np.fft.rfft(frames, n=fl, axis=-1)
        else:
            y = np.fft.fft(frames, n=fl, axis=-1)
            if onesided:
                y = y[..., : fl // 2 + 1]
        return _pack(y, signal.dtype)

    return run


@op("MelWeightMatrix", since=17)
def melweightmatrix_17(node):
    out_code = node.attr("output_datatype", 1)
    try:
        out_dt = np_dtype(int(out_code))
    except ValueError:
        invalid(node, f"output_datatype {out_code} is not a known element type", errors.InvalidModel)

    def run(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz):
        nmel = _scalar_int(node, num_mel_bins, "num_mel_bins")
        n = _scalar_int(node, dft_length, "dft_length")
        sr = float(np.asarray(sample_rate).reshape(-1)[0])
        lo = float(np.asarray(lower_edge_hertz).reshape(-1)[0])
        hi = float(np.asarray(upper_edge_hertz).reshape(-1)[0])
        if nmel <= 0 or n <= 0 or sr <= 0:
            invalid(node, "num_mel_bins, dft_length and sample_rate must be positive")
        if not (0 <= lo <= hi):
            invalid(node, f"need 0 <= lower_edge_hertz <= upper_edge_hertz, got {lo}, {hi}")
        nspec = n // 2 + 1
        check_alloc((nspec, nmel), out_dt, node)
        lo_mel = 2595.0 * np.log10(1.0 + lo / 700.0)
        hi_mel = 2595.0 * np.log10(1.0 + hi / 700.0)
        step = (hi_mel - lo_mel) / (nmel + 2)
        mels = np.arange(nmel + 2) * step + lo_mel
        hz = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
        bins = np.floor((n + 1) * hz / sr).astype(np.int64)
        # triangles: rising on [left, center], falling on [center, right), peak 1 at center
        j = np.arange(nspec)[:, None]
        left, center, right = bins[:-2][None, :], bins[1:-1][None, :], bins[2:][None, :]
        up = np.maximum(center - left, 1)
        down = np.maximum(right - center, 1)
        out = np.zeros((nspec, nmel), dtype=np.float64)
        out = np.where((j >= left) & (j < center), (j - left) / up, out)
        out = np.where((j > center) & (j < right), (right - j) / down, out)
        out = np.where(j == center, 1.0, out)
        return out.astype(out_dt)

    return run
