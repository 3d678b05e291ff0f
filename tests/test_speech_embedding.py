"""The speech embedding: its PyTorch port, its pinned weights, and models built on it."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from torch import nn

from sdc.audio.embedding import SpeechEmbeddingFrontend
from sdc.errors import SdcError
from sdc.inference.checkpoint import load_classifier
from sdc.inference.onnx_graph import all_graphs
from sdc.pretrained import fetch
from sdc.pretrained.speech_embedding import (
    CONTEXT_FRAMES,
    EXPORTED_SPANS,
    HOP,
    MEL_BINS,
    N_FFT,
    SPAN_ALIGN,
    STRIDE_FRAMES,
    WINDOW_TAPS,
    SpeechEmbedding,
    _length_groups,
    _sounding_span,
    check_front_end,
    windowed_dft,
)
from speech_embedding_stand_in import stand_in


def speech_like(seconds: float, seed: int, rate: int = 16000) -> torch.Tensor:
    """A gliding harmonic tone with a noise burst: enough structure for every layer to see."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    pitch = 120 + 60 * t / seconds
    phase = 2 * torch.pi * torch.cumsum(pitch, 0) / rate
    wave = sum(torch.sin(h * phase) / h for h in range(1, 8))
    burst = torch.randn(len(t), generator=generator) * (t > seconds / 2) * (t < seconds / 2 + 0.1)
    return (0.2 * wave * torch.hann_window(len(t)) + 0.05 * burst).float()


def test_one_pass_gives_the_embedding_of_every_76_frame_stretch() -> None:
    """The port runs the network once over a whole window; openWakeWord runs it on each 76-frame
    stretch, 8 frames apart. Equal, because time is never padded and is pooled by 8 in all."""
    net = stand_in(SpeechEmbedding())
    wave = speech_like(1.6, seed=1).unsqueeze(0)
    with torch.no_grad():
        log_mel = net.log_mel(net.power(wave))
        whole = net.embed(log_mel)[0]
        frames = log_mel.shape[-2]
        one_by_one = torch.stack(
            [
                net.embed(log_mel[:, :, start : start + CONTEXT_FRAMES])[0, 0]
                for start in range(0, frames - CONTEXT_FRAMES + 1, STRIDE_FRAMES)
            ]
        )
    assert frames == (wave.shape[-1] - N_FFT) // HOP + 1
    assert whole.shape == one_by_one.shape == (SpeechEmbedding.steps(wave.shape[-1]), 96)
    assert whole.abs().max() > 0.1
    assert (whole - one_by_one).abs().max() < 1e-5 * whole.abs().max()


def test_a_clips_embedding_does_not_depend_on_the_clips_beside_it() -> None:
    """The 80 dB floor is each clip's own (the ONNX graph takes it over its whole input)."""
    net = stand_in(SpeechEmbedding())
    quiet = 0.001 * speech_like(1.2, seed=2)
    loud = speech_like(1.2, seed=3)
    with torch.no_grad():
        alone = net(quiet.unsqueeze(0))
        beside = net(torch.stack([quiet, loud]))[:1]
    assert (alone - beside).abs().max() < 1e-5 * alone.abs().max()


def test_load_onnx_puts_every_weight_in_its_layer() -> None:
    net = SpeechEmbedding()
    convs = [m for m in net.network if isinstance(m, nn.Conv2d)]
    real, imag = windowed_dft(torch.zeros(N_FFT).index_fill(0, torch.arange(100, 400), 0.5))
    mel = {
        "0.stft.conv_real.weight": real,
        "0.stft.conv_imag.weight": imag,
        "1.melW": torch.zeros(net.mel.shape).index_fill(0, torch.arange(5, 100), 1.0),
    }
    emb: dict[str, torch.Tensor] = {}
    for i, conv in enumerate(convs[:-1]):
        name = "model/conv2d" + (f"_{i}" if i else "") + "/Conv2D"
        emb[f"{name}_weights_fused_bn"] = torch.randn(conv.weight.shape)
        emb[f"{name}_bias_fused_bn"] = torch.randn(conv.bias.shape)
    emb[f"model/conv2d_{len(convs) - 1}/Conv2D/ReadVariableOp:0"] = torch.randn(
        convs[-1].weight.shape
    )
    net.load_onnx(mel, emb)
    assert len(convs) == 20
    assert torch.equal(net.stft_imag, mel["0.stft.conv_imag.weight"])
    assert torch.equal(net.mel, mel["1.melW"])
    assert torch.equal(convs[7].weight, emb["model/conv2d_7/Conv2D_weights_fused_bn"])
    assert torch.equal(convs[0].bias, emb["model/conv2d/Conv2D_bias_fused_bn"])
    assert torch.equal(convs[-1].weight, emb["model/conv2d_19/Conv2D/ReadVariableOp:0"])
    assert not any(p.requires_grad for p in net.parameters())


def test_front_end_weights_the_fast_spectrum_would_misread_are_refused() -> None:
    """`power` takes the window from the DFT kernels and the export leaves out the bins and
    taps that are zero in the pinned weights: other weights are refused, not misread."""
    good = stand_in(SpeechEmbedding())
    not_a_dft = stand_in(SpeechEmbedding())
    not_a_dft.stft_imag.mul_(-1.0)
    wide_mel = stand_in(SpeechEmbedding())
    wide_mel.mel[200, 3] = 0.1
    wide_window = stand_in(SpeechEmbedding())
    real, imag = windowed_dft(torch.hann_window(N_FFT))
    wide_window.stft_real.copy_(real)
    wide_window.stft_imag.copy_(imag)
    check_front_end(good)
    for net in (not_a_dft, wide_mel, wide_window):
        with pytest.raises(ValueError, match="not the pinned weights"):
            check_front_end(net)


def test_the_exported_spectrum_is_the_ffts_over_the_bins_the_mel_filters_read() -> None:
    net = stand_in(SpeechEmbedding())
    waves = torch.stack([speech_like(1.3, seed=s) for s in range(2)])
    with torch.no_grad():
        fft = net.power(waves)
        convolved = net.exported_power(waves)
        by_convolution = torch.cat(
            [
                nn.functional.conv1d(32767.0 * waves.unsqueeze(1), k, stride=HOP)
                for k in (net.stft_real, net.stft_imag)
            ]
        )
    assert fft.shape == (2, 1, N_FFT // 2 + 1, (waves.shape[-1] - N_FFT) // HOP + 1)
    assert convolved.shape == (2, 1, MEL_BINS.stop - MEL_BINS.start, fft.shape[-1])
    scale = fft.max()
    assert (convolved - fft[:, :, MEL_BINS]).abs().max() < 1e-5 * scale
    # The FFT is the original's convolution with all 257 bins and 512 taps.
    real, imag = by_convolution.chunk(2)
    assert ((real.square() + imag.square()).unsqueeze(1) - fft).abs().max() < 1e-5 * scale
    assert torch.allclose(net.log_mel(convolved), net.log_mel(fft), atol=1e-4)


def test_padding_is_silence_on_both_sides_of_the_window() -> None:
    padded = SpeechEmbeddingFrontend(clip_seconds=1.0, pad_seconds=0.4, normalize="none")
    plain = SpeechEmbeddingFrontend(clip_seconds=1.8, normalize="none")
    stand_in(padded.embedding)
    stand_in(plain.embedding)
    windows = torch.stack([speech_like(1.0, seed=s, rate=8000) for s in range(2)])
    with torch.no_grad():
        got = padded(windows)
        expected = plain(nn.functional.pad(windows, (3200, 3200)))
    assert got.shape == (2, *padded.output_shape) == (2, 1, 96, plain.steps)
    assert torch.allclose(got, expected)


@pytest.mark.parametrize("offsets", [[0.9], [2.0], [0.0, 0.37, 1.55, 2.301], [0.013, 0.6]])
def test_the_embedding_skips_silence_and_gives_the_same_numbers(offsets: list[float]) -> None:
    """The network runs only over the frames that hold sound, the silence around them
    computed once per layer: the same numbers as the whole window, wherever the clips sit (odd
    frame offsets, the window's edges, clips of one batch apart)."""
    net = stand_in(SpeechEmbedding()).eval()
    windows = torch.zeros(len(offsets), 49600)  # 3.1 s at 16 kHz
    for row, (offset, seed) in enumerate(zip(offsets, range(5, 9), strict=False)):
        clip = speech_like(0.6 + 0.1 * row, seed=seed)
        start = min(round(offset * 16000), windows.shape[1] - len(clip))
        windows[row, start : start + len(clip)] = clip
    heard: list[int] = []
    # The first activation's input: the first convolution's output, over the frames it ran on
    # (and the quiet column's, one frame, left out).
    net.network[1].register_forward_hook(lambda _m, args, _o: heard.append(args[0].shape[-2]))
    with torch.no_grad():
        image = net.log_mel(net.power(windows))
        whole = net.network(image).squeeze(-1).transpose(1, 2)
        skipping = net.embed(image)
    assert skipping.shape == whole.shape
    assert whole.abs().max() > 0.1
    assert (skipping - whole).abs().max() < 1e-5 * whole.abs().max()
    if len(offsets) == 1:  # one clip of 0.6 s: far fewer frames than the window's 307
        assert [n for n in heard if n > 1][-1] < 100 < image.shape[-2]


def test_a_silent_window_takes_the_whole_network() -> None:
    net = stand_in(SpeechEmbedding()).eval()
    silent = net.log_mel(net.power(torch.zeros(2, 49600)))
    with torch.no_grad():
        whole = net.network(silent).squeeze(-1).transpose(1, 2)
        assert (net.embed(silent) - whole).abs().max() < 1e-5 * whole.abs().max()
        assert net.embed(silent[:0]).shape == (0, *whole.shape[1:])  # an empty batch


def test_out_of_training_the_spectrum_too_is_computed_only_around_the_sound() -> None:
    """Centred clips in silence, as inference hears them: the spectrum and the network run
    over the frames around the batch's sound, with the whole window's numbers."""
    net = stand_in(SpeechEmbedding()).eval()
    windows = torch.zeros(3, 49600)  # 3.1 s at 16 kHz
    for row in range(3):
        clip = speech_like(0.5 + 0.1 * row, seed=30 + row)
        start = (windows.shape[1] - len(clip)) // 2
        windows[row, start : start + len(clip)] = clip
    spectra: list[int] = []
    power = net.power
    net.power = lambda waves: (spectra.append(waves.shape[-1]), power(waves))[1]  # type: ignore[method-assign]
    with torch.no_grad():
        skipping = net(windows)
        net.skip_silence = False
        whole = net(windows)
    assert spectra[1] == windows.shape[1] and spectra[0] < windows.shape[1] // 3
    assert whole.abs().max() > 0.1
    assert (skipping - whole).abs().max() < 1e-5 * whole.abs().max()


@pytest.mark.parametrize(
    "sound", [[(20000, 28000)], [(3, 900), (30000, 30001)], [(49000, 49600)], [(0, 0)]]
)
def test_the_sounding_span_found_from_the_samples_is_the_heard_frames(
    sound: list[tuple[int, int]],
) -> None:
    """Out of an export, the batch's sounding frames come from the samples by numpy: the
    span holds every frame whose analysis window reads a sample that is not zero, and is the
    one an exported graph (traced) finds."""
    waves = torch.zeros(2, 49600)
    for row, (start, stop) in enumerate(sound):
        waves[row, start:stop] = 0.5 + torch.rand(stop - start)
    eager = [int(x) for x in _sounding_span(waves)]
    traced = torch.jit.trace(lambda w: torch.stack(_sounding_span(w)), waves)(waves)
    assert eager == traced.tolist()
    reads = [
        bool(waves[:, j * HOP + WINDOW_TAPS.start : j * HOP + WINDOW_TAPS.stop].any())
        for j in range(SpeechEmbedding.image_frames(waves.shape[-1]))
    ]
    start, length = eager
    assert (start - SPAN_ALIGN) % 8 == 0 and (length - SPAN_ALIGN) % 8 == 0
    if any(reads):
        heard = [j for j, read in enumerate(reads) if read]
        assert start <= heard[0] < start + 8 and heard[-1] < start + length <= heard[-1] + 8
    else:
        assert length == SPAN_ALIGN or length == 8 + SPAN_ALIGN


def test_weights_changed_after_inference_are_heard() -> None:
    """Out of training, what the quiet column adds is kept with the weights it came from: a
    weight changed in place, or replaced, changes the answer as it changes the whole network's."""
    net = stand_in(SpeechEmbedding()).eval()
    windows = torch.zeros(2, 49600)
    windows[:, 20000:28000] = speech_like(0.5, seed=40)
    with torch.no_grad():
        before = net(windows)
        for conv in net.convolutions()[:3]:
            conv.weight.mul_(1.5)
        net.convolutions()[3].weight = nn.Parameter(net.convolutions()[3].weight * 0.5)
        after = net(windows)
        net.skip_silence = False
        whole = net(windows)
    assert (after - before).abs().max() > 0.1
    assert (after - whole).abs().max() < 1e-5 * whole.abs().max()


def test_training_skips_silence_with_the_same_numbers_and_gradients() -> None:
    """Training windows hold clips anywhere, some under noise over the whole window: the clips
    in silence share a span as long as the longest of them, the noisy ones run the whole
    network, and the fine-tuned layers get the whole network's gradients.

    In float64: in float32 one convolution's weight gradient sums terms that cancel to 2% of
    their size, and the two paths' summation orders then differ by 2% on an AVX2 CPU."""
    net = stand_in(SpeechEmbedding()).double()
    net.unfreeze_last(10)
    net.train()
    generator = torch.Generator().manual_seed(3)
    windows = torch.zeros(6, 49600, dtype=torch.float64)  # 3.1 s at 16 kHz
    for row in range(6):
        clip = speech_like(0.4 + 0.1 * row, seed=20 + row)
        start = int(torch.randint(0, windows.shape[1] - len(clip), (), generator=generator))
        windows[row, start : start + len(clip)] = clip
    windows[[1, 4], 6400:-6400] += 0.01 * torch.randn(2, 36800, generator=generator)
    image = net.log_mel(net.power(windows))
    weights = torch.randn(6, SpeechEmbedding.steps(49600), 96, generator=generator).double()
    lengths: list[int] = []
    # The first activation's input: the first convolution's output, over the frames it ran on
    # (the quiet column's, one frame, left out).
    net.network[1].register_forward_hook(
        lambda _m, args, _o: lengths.append(args[0].shape[-2]) if args[0].shape[-2] > 1 else None
    )

    def embedding_and_gradients(skip_silence: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        net.zero_grad()
        net.skip_silence = skip_silence
        out = net.embed(image)
        (out * weights).sum().backward()
        return out.detach(), [conv.weight.grad.clone() for conv in net.convolutions()[-10:]]

    skipping, skipping_grads = embedding_and_gradients(True)
    assert len(lengths) == 2  # two groups: the noisy clips whole, the others a span
    assert max(lengths) == image.shape[-2] - 2 and min(lengths) < 150  # 3 frames in, 1 out
    whole, whole_grads = embedding_and_gradients(False)
    assert whole.abs().max() > 0.1
    assert (skipping - whole).abs().max() < 1e-10 * whole.abs().max()
    for got, expected in zip(skipping_grads, whole_grads, strict=True):
        assert expected.abs().max() > 0
        assert (got - expected).abs().max() < 1e-10 * expected.abs().max()


@pytest.mark.parametrize(
    ("lengths", "groups"),
    [
        ([36, 44, 36], [[0, 1, 2]]),  # alike: one group
        ([236, 28, 236, 44], [[1, 3], [0, 2]]),  # in silence, and noisy
        ([60, 68, 236], [[0, 1], [2]]),
        ([120, 128, 140], [[0, 1, 2]]),  # a split that saves too little
    ],
)
def test_clips_are_grouped_by_the_span_they_need(
    lengths: list[int], groups: list[list[int]]
) -> None:
    got = _length_groups(lengths, frames=307)
    assert [sorted(group) for group, _ in got] == groups
    assert [span for _, span in got] == [max(lengths[i] for i in g) for g in groups]


def test_the_exported_embedding_skips_silence_with_the_same_numbers(tmp_path: Path) -> None:
    """An exported graph has spans of 60, 76 and 148 frames ready and the whole network past
    them: each gives the whole network's numbers (a short digit, a middling one, a long one,
    one at either edge of the window, a faint one, a window with no silence)."""
    ort = pytest.importorskip("onnxruntime")

    class Embed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = stand_in(SpeechEmbedding()).eval()

        def forward(self, waves: torch.Tensor) -> torch.Tensor:
            return self.embedding(waves)

    model = Embed().eval()
    program = torch.onnx.export(
        model,
        (torch.zeros(2, 49600),),
        input_names=["waves"],
        dynamo=True,
        dynamic_shapes={"waves": {0: torch.export.Dim("batch")}},
        verbose=False,
    )
    assert program is not None
    assert any(node.op_type == "If" for node in program.model_proto.graph.node)
    ops = {node.op_type for graph in all_graphs(program.model_proto.graph) for node in graph.node}
    assert not ops & {"ScatterND", "CumSum"}, "the quiet rows are put beside the span, not added"
    program.save(str(tmp_path / "embedding.onnx"))
    session = ort.InferenceSession(str(tmp_path / "embedding.onnx"))
    # (seconds, where it starts, its level): the graph finds the span from the samples, and
    # so computes the spectrum over it only; a clip so faint that silence (-100 dB) lies
    # above its 80 dB floor.
    cases = {
        "short": (0.4, 1.3, 1.0),
        "middling": (0.65, 1.2, 1.0),
        "long": (1.0, 1.0, 1.0),
        "start": (0.5, 0.0, 1.0),
        "end": (0.5, 2.6, 1.0),
        "faint": (0.4, 1.3, 1e-8),
        "no silence": (3.1, 0, 1.0),
    }
    for name, (seconds, offset, level) in cases.items():
        windows = torch.zeros(2, 49600)
        clip = speech_like(seconds, seed=11) * level
        start = round(offset * 16000)
        windows[:, start : start + len(clip)] = clip
        windows[1] *= 0.3
        with torch.no_grad():
            image = model.embedding.log_mel(model.embedding.power(windows))
            whole = model.embedding.network(image).squeeze(-1).transpose(1, 2).numpy()
        got = session.run(None, {"waves": windows.numpy()})[0]
        assert np.abs(got - whole).max() < 1e-4 * np.abs(whole).max(), name


# -- the pinned weights: downloaded from a local server standing in for PyPI ------------------

FAKE = {"melspectrogram.onnx": b"mel graph bytes", "embedding_model.onnx": b"embedding bytes"}
FAKE_DIGESTS = {name: hashlib.sha256(data).hexdigest() for name, data in FAKE.items()}


def _wheel(path: Path, files: dict[str, bytes], extra: dict[str, bytes] | None = None) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(f"{fetch.MEMBER_FOLDER}/{name}", data)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _nothing_staged(cache: Path) -> bool:
    return not [p for p in cache.iterdir() if p.name.startswith(".")] if cache.is_dir() else True


def test_weights_are_downloaded_checked_and_only_the_two_files_taken(
    server: tuple[Path, str], tmp_path: Path
) -> None:
    root, url = server
    digest = _wheel(root / "w.whl", FAKE, extra={"../../evil.txt": b"x", "other/a.onnx": b"y"})
    cache = tmp_path / "cache"
    folder = fetch.weight_files(cache, f"{url}/w.whl", digest, FAKE_DIGESTS)
    assert folder == cache / fetch.FOLDER
    assert sorted(p.name for p in folder.iterdir()) == sorted(FAKE)
    assert (folder / "embedding_model.onnx").read_bytes() == FAKE["embedding_model.onnx"]
    assert not (tmp_path / "evil.txt").exists() and _nothing_staged(cache)
    # Found in place the second time: the server is not asked again.
    (root / "w.whl").unlink()
    assert fetch.weight_files(cache, f"{url}/w.whl", digest, FAKE_DIGESTS) == folder


def test_a_changed_wheel_or_member_keeps_nothing(server: tuple[Path, str], tmp_path: Path) -> None:
    root, url = server
    digest = _wheel(root / "w.whl", FAKE)
    cache = tmp_path / "cache"
    with pytest.raises(SdcError, match="SHA-256 is not"):
        fetch.weight_files(cache, f"{url}/w.whl", "0" * 64, FAKE_DIGESTS)
    bad = {**FAKE_DIGESTS, "melspectrogram.onnx": "f" * 64}
    with pytest.raises(SdcError, match=r"melspectrogram\.onnx has not the pinned SHA-256"):
        fetch.weight_files(cache, f"{url}/w.whl", digest, bad)
    with pytest.raises(SdcError, match="the wheel has no"):
        fetch.weight_files(cache, f"{url}/w.whl", _wheel(root / "w.whl", {}), FAKE_DIGESTS)
    assert not (cache / fetch.FOLDER).exists() and _nothing_staged(cache)


def test_offline_and_tampered_copies_are_one_line_errors(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(SdcError, match=r"without internet, put melspectrogram\.onnx"):
        fetch.weight_files(cache, "http://127.0.0.1:9/none.whl", "0" * 64, FAKE_DIGESTS, 2.0)
    folder = cache / fetch.FOLDER
    folder.mkdir(parents=True)
    for name, data in FAKE.items():
        (folder / name).write_bytes(data)
    assert fetch.weight_files(cache, "http://127.0.0.1:9/none.whl", "0", FAKE_DIGESTS) == folder
    (folder / "melspectrogram.onnx").write_bytes(b"changed")
    with pytest.raises(SdcError, match=r"onnx: SHA-256 is not .* Remove the folder"):
        fetch.weight_files(cache, "http://127.0.0.1:9/none.whl", "0", FAKE_DIGESTS)
    (folder / "melspectrogram.onnx").unlink()
    with pytest.raises(SdcError, match=r"melspectrogram\.onnx: missing"):
        fetch.weight_files(cache, "http://127.0.0.1:9/none.whl", "0", FAKE_DIGESTS)
    assert (folder / "embedding_model.onnx").read_bytes() == FAKE["embedding_model.onnx"]


# -- the real weights, from PyPI ---------------------------------------------------------------


@pytest.fixture(scope="module")
def real_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned ONNX files: from SDC_PRETRAINED_DIR, else downloaded from PyPI (16 MB)."""
    import os

    cache = os.environ.get("SDC_PRETRAINED_DIR") or tmp_path_factory.mktemp("pretrained")
    try:
        return fetch.weight_files(cache)
    except SdcError as err:
        if "downloading" in str(err):
            pytest.skip(f"no copy of the speech embedding's weights and no PyPI: {err}")
        raise


def test_the_port_matches_openwakewords_onnx_graphs(real_weights: Path) -> None:
    """Both ways to the spectrum: the FFT (PyTorch) and the trimmed convolution (exports)."""
    ort = pytest.importorskip("onnxruntime")
    net = SpeechEmbedding()
    net.load_onnx(
        fetch.read_initializers(real_weights / "melspectrogram.onnx"),
        fetch.read_initializers(real_weights / "embedding_model.onnx"),
    )
    mel = ort.InferenceSession(str(real_weights / "melspectrogram.onnx"))
    emb = ort.InferenceSession(str(real_weights / "embedding_model.onnx"))
    wave = speech_like(1.5, seed=4)
    # openWakeWord's own steps: 16-bit sample values in, x / 10 + 2, 76-frame stretches.
    spec = mel.run(None, {"input": (wave.numpy() * 32767)[None]})[0].squeeze() / 10 + 2
    starts = range(0, spec.shape[0] - CONTEXT_FRAMES + 1, STRIDE_FRAMES)
    stretches = np.stack([spec[s : s + CONTEXT_FRAMES] for s in starts])[..., None]
    expected = emb.run(None, {"input_1": stretches.astype(np.float32)})[0].reshape(-1, 96)
    with torch.no_grad():
        got = net(wave.unsqueeze(0))[0].numpy()
        exported = net.embed(net.log_mel(net.exported_power(wave.unsqueeze(0))))[0].numpy()
    assert got.shape == expected.shape == (len(starts), 96)
    assert np.abs(got - expected).max() < 1e-4 * np.abs(expected).max()
    assert np.abs(exported - expected).max() < 1e-4 * np.abs(expected).max()


# -- a model on the embedding: trained, saved, reloaded, exported -------------------------------


@pytest.fixture
def stand_in_weights(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Training loads `stand_in` weights instead of downloading the real ones."""
    monkeypatch.setattr(
        SpeechEmbeddingFrontend, "load_pretrained", lambda self: stand_in(self.embedding)
    )
    yield


@pytest.mark.slow
@pytest.mark.parametrize("finetune_layers", [0, 10])
def test_a_model_on_the_embedding_trains_and_its_checkpoint_carries_the_weights(
    make_cfg: Callable[..., DictConfig],
    stand_in_weights: None,
    tmp_path: Path,
    finetune_layers: int,
) -> None:
    from sdc.inference.export import export_int8, export_onnx
    from sdc.inference.recognizer import Recognizer
    from sdc.training.train import train

    cfg = make_cfg(
        "features=speech_embedding",
        "model=embedding_head",
        "trainer.max_epochs=2",
        f"features.weights_dir={tmp_path / 'never_used'}",
        f"features.finetune_layers={finetune_layers}",
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["test_acc"] <= 1.0
    best = next((Path(cfg.paths.output_dir) / "checkpoints").glob("epoch*.ckpt"))
    model = load_classifier(best)
    expected = stand_in(SpeechEmbedding())
    assert bool(model.frontend.fitted)
    assert torch.equal(model.frontend.embedding.mel, expected.mel)
    assert torch.equal(model.frontend.embedding.network[0].weight, expected.network[0].weight)
    # The last convolution is the checkpoint's own when it was fine-tuned.
    last = model.frontend.embedding.convolutions()[-1].weight
    assert torch.equal(last, expected.convolutions()[-1].weight) == (finetune_layers == 0)
    assert model.frontend.std.min() > 0 and model.frontend.mean.abs().sum() > 0
    assert not (tmp_path / "never_used").exists(), "a checkpoint needs no download"

    windows = torch.stack([speech_like(2.3, seed=s, rate=8000) for s in range(3)])
    with torch.no_grad():
        logits = model(windows)
        fused = model.for_inference()(windows)
    assert torch.allclose(logits, fused, atol=1e-4)
    onnx = Recognizer.load(export_onnx(model, tmp_path / "model.onnx"))
    assert np.abs(onnx.backend(windows.numpy()) - logits.numpy()).max() < 2e-3
    assert weights_are_local(tmp_path / "model.onnx"), "ONNX Runtime can reorder them"
    if finetune_layers == 0:  # one 8-bit copy is enough
        int8 = export_int8(
            model, tmp_path / "model.onnx", tmp_path / "model.int8.onnx", windows.numpy()
        )
        spectrum, float_network, eight_bit = convolutions_by_kind(int8)
        # Each span and the whole window compute the STFT: its two kernels, in float.
        assert spectrum == 2 * (len(EXPORTED_SPANS) + 1), "the STFT's convolutions stay in float"
        assert float_network == 0, "no convolution of the network is left in float"
        assert len(eight_bit) == 22, "the embedding's 20 and the head's 2 in 8 bits"
        assert sum(eight_bit.values()) > 22, "in the branches that skip silence too"
        # Short digits in silence, as inference centres them: the branches that skip it.
        short = torch.zeros_like(windows)
        short[:, 8000:12800] = windows[:, 8000:12800]
        both = np.concatenate([windows.numpy(), short.numpy()])
        got, expected = Recognizer.load(int8).backend(both), onnx.backend(both)
        assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.95


def convolutions_by_kind(path: Path) -> tuple[int, int, dict[str, int]]:
    """In the ONNX model at `path`, over all its graphs: float convolutions whose weights come
    from the STFT kernels, float convolutions reading a layer's weight as it is, and the uses
    of each 8-bit weight."""
    import onnx

    from sdc.inference.quantize import weight_sources

    spectrum, float_network, eight_bit = 0, 0, {}
    for graph in all_graphs(onnx.load(str(path)).graph):
        initializers = {i.name for i in graph.initializer}
        producers = {output: node for node in graph.node for output in node.output}
        sources = weight_sources(graph)
        for node in graph.node:
            if node.op_type != "Conv":
                continue
            weight = producers.get(node.input[1])
            if weight is not None and weight.op_type == "DequantizeLinear":
                eight_bit[weight.input[0]] = eight_bit.get(weight.input[0], 0) + 1
            elif "stft" in sources[node.name]:
                spectrum += 1
            elif node.input[1] in initializers and node.input[1].endswith(".weight"):
                float_network += 1  # (the silence's one-column convolutions read their sums)
    return spectrum, float_network, eight_bit


def weights_are_local(path: Path) -> bool:
    """Whether every convolution of the ONNX model at `path`, in whichever of its graphs, reads
    its weight from that graph: an initializer of its own or a node beside it."""
    import onnx

    graphs = list(all_graphs(onnx.load(str(path)).graph))
    assert len(graphs) > 1, "the export has branches"
    for graph in graphs:
        local = {i.name for i in graph.initializer}
        local |= {output for node in graph.node for output in node.output}
        if any(n.op_type == "Conv" and n.input[1] not in local for n in graph.node):
            return False
    return True


# -- fine-tuning the embedding's top ------------------------------------------------------------

HEAD = {"_target_": "sdc.models.embedding_head.EmbeddingHead", "channels": 16}
ADAMW = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-2}


def tuned_classifier(layers: int) -> torch.nn.Module:
    from sdc.training.module import DigitClassifier

    frontend = {
        "_target_": "sdc.audio.embedding.SpeechEmbeddingFrontend",
        "clip_seconds": 1.0,
        "normalize": "none",
        "finetune_layers": layers,
        "finetune_lr_scale": 0.1,
    }
    model = DigitClassifier(net=HEAD, frontend=frontend, optim=ADAMW)
    stand_in(model.frontend.embedding)
    return model


@pytest.mark.parametrize("layers", [5, 10])
def test_fine_tuning_trains_the_embeddings_last_convolutions_only_at_a_smaller_rate(
    layers: int,
) -> None:
    model = tuned_classifier(layers)
    convs = model.frontend.embedding.convolutions()
    rest, tuned = model.parameter_groups()
    assert tuned["lr"] == pytest.approx(1e-3) and rest["lr"] == pytest.approx(1e-2)
    last = {id(p) for c in convs[-layers:] for p in c.parameters()}
    assert {id(p) for p in tuned["params"]} == last

    before = [c.weight.detach().clone() for c in convs]
    optimizer = model.build_optimizer()
    windows = torch.stack([speech_like(1.0, seed=s, rate=8000) for s in range(4)])
    loss = torch.nn.functional.cross_entropy(model(windows), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    moved = [not torch.equal(b, c.weight) for b, c in zip(before, convs, strict=True)]
    assert moved == [False] * (20 - layers) + [True] * layers


def test_a_frozen_embedding_has_one_group_and_one_cycle_keeps_each_groups_ratio() -> None:
    frozen = tuned_classifier(0)
    assert len(frozen.parameter_groups()) == 1
    assert not any(p.requires_grad for p in frozen.frontend.parameters())

    model = tuned_classifier(5)
    model.hparams.scheduler = {
        "_target_": "torch.optim.lr_scheduler.OneCycleLR",
        "_partial_": True,
        "max_lr": 2e-2,
        "total_steps": 10,
        "interval": "step",
    }
    scheduler = model.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert [g["max_lr"] for g in scheduler.optimizer.param_groups] == pytest.approx([2e-2, 2e-3])
