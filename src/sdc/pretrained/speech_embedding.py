"""Google's speech embedding (Lin et al. 2020, arXiv:2002.01322), ported to PyTorch.

A small convolutional network trained by Google on a large corpus of speech to make keyword
spotting work from few examples: 76 log-mel frames (0.775 s at 16 kHz) in, 96 numbers out. It
heard far more voices, accents and microphones than FSDD's six men, which is what a recognizer of
new voices lacks most: a logistic regression on its pooled embeddings of clean FSDD clips, trained
on five speakers, recognized the sixth at 96.9% on average (93.2% the worst), where sdc's own
CNN, trained on FSDD with every augmentation, reached 88.5% (77.0%).

The weights are openWakeWord's ONNX conversion of Google's TF-Hub module, read from
openWakeWord's pinned wheel (`sdc.pretrained.fetch`, which says what is known of their licence).
The port equals ONNX Runtime's output to float rounding (tested) and is fully convolutional:
every convolution is "valid" in time and the time axis is pooled by 2 three times, so one pass
over a whole window gives the embedding of every 76-frame stretch starting at a multiple of 8
frames, which openWakeWord computes one by one: a 2.3 s window is 227 frames in one pass
instead of 19 x 76 = 1,444. It also leaves out the silence around each clip
(`SpeechEmbedding.embed_heard`; out of training, the spectrum's too): the same numbers and
gradients in less than half the time for a centred digit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from sdc.audio.sound_stretch import sound_stretch

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 160
N_MELS = 32
CONTEXT_FRAMES = 76
"""Log-mel frames per embedding (0.775 s)."""
STRIDE_FRAMES = 8
"""Frames between successive embeddings (80 ms)."""
DIM = 96
TOP_DB = 80.0
MEL_FLOOR = 1e-10
"""Mel power is floored here before the logarithm: a frame of zero samples reads -100 dB."""
MEL_BINS = slice(2, 122)
"""The STFT bins the pinned mel filters read (62.5 Hz to 3.78 kHz); every other bin is
weighted 0, so an exported graph computes only these (checked when the weights load)."""
WINDOW_TAPS = slice(57, 456)
"""The pinned analysis window's nonzero samples (a 25 ms window centred in the 512)."""

# The network, in order: (kernel height over time, width over mel bands, in, out), with "P" for
# 2x2 max pooling and "p" for pooling over the bands only. Widths of 3 are padded by one band on
# each side; every convolution is unpadded in time.
LAYERS: tuple[tuple[int, int, int, int] | str, ...] = (
    (3, 3, 1, 24), (1, 3, 24, 24), (3, 1, 24, 24), "P",
    (1, 3, 24, 48), (3, 1, 48, 48), (1, 3, 48, 48), (3, 1, 48, 48), "p",
    (1, 3, 48, 72), (3, 1, 72, 72), (1, 3, 72, 72), (3, 1, 72, 72), "P",
    (1, 3, 72, 96), (3, 1, 96, 96), (1, 3, 96, 96), (3, 1, 96, 96), "p",
    (1, 3, 96, 96), (3, 1, 96, 96), (1, 3, 96, 96), (3, 1, 96, 96), "P",
)  # fmt: skip
CONVOLUTIONS = sum(not isinstance(layer, str) for layer in LAYERS) + 1
"""LAYERS' convolutions and the last one: the most that can be fine-tuned."""
LEAK = 0.2
FLOOR = -0.4
"""Each activation is max(leaky_relu(x, 0.2), -0.4), as in the original."""


class _Activation(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place where nothing learns from it (the frozen layers, inference): its input is
        # a convolution's fresh output. The whole network over 50 training windows: 148 ms
        # against 169 ms on the 2-core VM.
        if x.requires_grad or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return torch.nn.functional.leaky_relu(x, LEAK).clamp_min(FLOOR)
        return torch.nn.functional.leaky_relu_(x, LEAK).clamp_min_(FLOOR)


def _network() -> nn.Sequential:
    layers: list[nn.Module] = []
    for layer in LAYERS:
        if layer == "P":
            layers.append(nn.MaxPool2d(2))
        elif layer == "p":
            layers.append(nn.MaxPool2d((1, 2)))
        else:
            height, width, c_in, c_out = layer
            layers += [
                nn.Conv2d(c_in, c_out, (height, width), padding=(0, width // 2)),
                _Activation(),
            ]
    # The last layer: 3 frames x 1 band -> one 96-number embedding, no bias, no activation.
    layers.append(nn.Conv2d(DIM, DIM, (3, 1), bias=False))
    return nn.Sequential(*layers)


class SpeechEmbedding(nn.Module):
    """16 kHz waveforms (B, samples) in [-1, 1] -> embeddings (B, steps, 96), frozen.

    The log-mel front end is the original's: a 512-point STFT every 10 ms without centring
    (its kernels are part of the weights), 32 mel bands, power in dB floored 80 dB below the
    clip's loudest, then x / 10 + 2. The floor is taken per clip; openWakeWord's ONNX graph takes
    it over its whole input, which it feeds one clip at a time.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("stft_real", torch.zeros(N_FFT // 2 + 1, 1, N_FFT))
        self.register_buffer("stft_imag", torch.zeros(N_FFT // 2 + 1, 1, N_FFT))
        self.register_buffer("mel", torch.zeros(N_FFT // 2 + 1, N_MELS))
        # channels_last: a third faster on a CPU (0.57-0.65 s against 0.79-0.93 s for 50 windows
        # on one thread of the 2-core VM, while two trainings shared its cores).
        self.network = _network().to(memory_format=torch.channels_last)
        self.requires_grad_(False)
        self.skip_silence = True  # out of training, the network runs where there is sound

    @staticmethod
    def image_frames(samples: int) -> int:
        """Log-mel frames (10 ms) of `samples` samples at 16 kHz: every full analysis window."""
        return (samples - N_FFT) // HOP + 1

    @staticmethod
    def steps(samples: int) -> int:
        """Embeddings in a window of `samples` samples at 16 kHz."""
        frames = SpeechEmbedding.image_frames(samples)
        return (frames - CONTEXT_FRAMES) // STRIDE_FRAMES + 1

    def power(self, waves: torch.Tensor) -> torch.Tensor:
        """Power spectrogram (B, 1, 257, frames) of 16 kHz waveforms in [-1, 1].

        The original computes it as a convolution with its DFT kernels (the window times each
        bin's cosine and sine); an FFT gives the same numbers to float rounding in an eighth of
        the time (0.2 ms against 1.8 ms for a 3.1 s window on one thread). An exported graph
        keeps the convolution, which ONNX Runtime runs faster than its STFT operator, over
        only the bins and taps that are not zero (`exported_power`) and, where the window holds
        silence, only the frames around the sound (`_exported`).
        """
        if torch.onnx.is_in_onnx_export():
            return self.exported_power(waves)
        x = waves * 32767.0  # the original was fed 16-bit sample values
        window = self.stft_real[0, 0]  # bin 0's kernel is the window itself
        spectrum = torch.stft(x, N_FFT, HOP, window=window, center=False, return_complex=True)
        return (spectrum.real.square() + spectrum.imag.square()).unsqueeze(1)

    def exported_power(self, waves: torch.Tensor) -> torch.Tensor:
        """`power`'s MEL_BINS (B, 1, 120, frames) by convolution: the rest are never read."""
        frames = SpeechEmbedding.image_frames(waves.shape[-1])
        x = (waves[:, WINDOW_TAPS.start :] * 32767.0).unsqueeze(1)
        real = nn.functional.conv1d(x, self.stft_real[MEL_BINS, :, WINDOW_TAPS], stride=HOP)
        imag = nn.functional.conv1d(x, self.stft_imag[MEL_BINS, :, WINDOW_TAPS], stride=HOP)
        return (real.square() + imag.square())[..., :frames].unsqueeze(1)

    def log_mel(self, power: torch.Tensor, filters: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, 257, frames) power, or its MEL_BINS -> (B, 1, frames, 32): the network's
        input image. `filters`: mel filters of each clip's own (B, 1, 257, 32) instead of the
        pinned ones (VTLP, `sdc.audio.vtlp.warp_filters`)."""
        return self._log_mel_and_floor(power, filters)[0]

    def _log_mel_and_floor(
        self, power: torch.Tensor, filters: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`log_mel`, and each clip's floor (B, 1, 1, 1) in dB, TOP_DB below its loudest."""
        if filters is None:
            filters = self.mel if power.shape[-2] == self.mel.shape[0] else self.mel[MEL_BINS]
        mel = torch.matmul(power.transpose(-1, -2), filters).clamp_min(MEL_FLOOR)
        decibels = 10.0 / math.log(10.0) * mel.log()
        floor = decibels.amax(dim=(-2, -1), keepdim=True) - TOP_DB
        return torch.maximum(decibels, floor) / 10.0 + 2.0, floor

    def embed(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, 1, frames, 32) -> (B, steps, 96).

        Only over the frames that hold sound (`embed_heard`): the same numbers and gradients
        to float rounding, in a fraction of the time for a digit in silence.
        """
        image = log_mel.contiguous(memory_format=torch.channels_last)
        # A trace would keep one window's span for every window; an export skips silence from
        # the samples (`forward`).
        exporting = torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
        # Training on a GPU keeps the whole network: a few large kernels, no sync per batch,
        # where the spans' bookkeeping is many small ones (only measured on a CPU).
        accelerated_training = self.training and image.device.type != "cpu"
        if not self.skip_silence or exporting or accelerated_training or len(image) == 0:
            return self._embed_whole(image)
        return self.embed_heard(image)

    def _embed_whole(self, image: torch.Tensor) -> torch.Tensor:
        return self.network(image).squeeze(-1).transpose(1, 2)

    def embed_heard(self, image: torch.Tensor) -> torch.Tensor:
        """`embed`, computed only where each clip's image differs from its quietest value.

        A window's zero padding is a run of frames all at the log-mel floor, one constant
        column per clip. Every convolution is "valid" in time, so a position whose inputs all
        lie in such a run has the same value anywhere in it: that value is computed once per
        layer from one column (the kernel summed over time, as a constant input sees it), and
        the network runs over the frames that hold sound plus what they reach. A centred FSDD
        digit holds about 40 of a 3.1 s window's 307 frames.

        Each clip's span starts where its own sound does, so clips placed anywhere in their
        windows (training) share one span as long as the longest; clips with little silence
        (noise over the whole window) run the whole network as a group of their own
        (`_length_groups`).

        An exported graph does the same from the samples (`forward`).
        """
        floor, start, length = _heard_spans(image)
        groups = _length_groups(length.tolist(), image.shape[-2])
        if len(groups) == 1:
            return self._embed_group(image, floor, start, groups[0][1])
        parts, order = [], []
        for group, span in groups:
            index = torch.tensor(group, device=image.device)
            clips = image.index_select(0, index)
            parts.append(self._embed_group(clips, floor[index], start[index], span))
            order.append(index)
        return torch.cat(parts).index_select(0, torch.cat(order).argsort())

    def _embed_group(
        self, image: torch.Tensor, floor: torch.Tensor, start: torch.Tensor, span: int
    ) -> torch.Tensor:
        """`embed_heard` for clips that share a span of `span` frames."""
        if _runs_whole(span, image.shape[-2]):
            return self._embed_whole(image)
        return self._embed_span(image, floor, start, span)

    def _embed_span(
        self, image: torch.Tensor, floor: torch.Tensor, start: torch.Tensor, length: int
    ) -> torch.Tensor:
        """The network over frames [start, start + length) of each clip (`start` (B,)), and the
        quiet column everywhere else."""
        quiet = floor.expand(-1, -1, 1, image.shape[-1])
        # Quiet frames on both sides, so that a span reaching past the image is still inside.
        padded = _beside(quiet, image, STRIDE_FRAMES, length)
        span = torch.arange(length, device=image.device) + (start.unsqueeze(-1) + STRIDE_FRAMES)
        return self._embed_frames(_frames_at(padded, span), quiet, start, image.shape[-2])

    def _embed_frames(
        self,
        x: torch.Tensor,
        quiet: torch.Tensor,
        start: torch.Tensor,
        frames: int,
        exported: bool = False,
    ) -> torch.Tensor:
        """The network over `x` (B, 1, length, 32), frames start, start + 1, ... of an image of
        `frames` frames that is the quiet column (B, 1, 1, 32) everywhere else; `start` is one
        frame for the batch (a 0-d tensor) or each clip's own (B,). `exported`: in a graph
        being exported (see `_convolve_beside`)."""
        for module in self.network:  # x holds positions start, start + 1, ... of each layer
            if isinstance(module, nn.Conv2d):
                reach = module.kernel_size[0] - 1  # outputs the span reaches, on each side
                x, quiet = _convolve_beside(module, x, quiet, exported)
                start = start - reach
            elif isinstance(module, nn.MaxPool2d) and module.kernel_size == 2:
                x = nn.functional.max_pool2d(x, 2)  # start and length are even (SPAN_ALIGN)
                quiet = nn.functional.max_pool2d(quiet, (1, 2))
                start = start.div(2, rounding_mode="floor")
            else:  # activations and pooling over the bands: column by column
                x, quiet = module(x), module(quiet)
        steps = (frames - CONTEXT_FRAMES) // STRIDE_FRAMES + 1
        position = torch.arange(steps, device=x.device) - start.unsqueeze(-1)  # each step in x
        inside = ((position >= 0) & (position < x.shape[-2])).reshape(-1, 1, steps, 1)
        heard = _frames_at(x, position.clamp(0, x.shape[-2] - 1))
        return torch.where(inside, heard, quiet).squeeze(-1).transpose(1, 2)

    def _exported(self, waves: torch.Tensor, spans: tuple[int, ...]) -> torch.Tensor:
        """`forward` in an exported graph: the shortest of `spans` (frames) that holds every
        frame that reads a sample that is not zero, else the whole window. The STFT, as costly
        as the network over 76 frames, is then computed over the span only."""
        start, length = _sounding_span(waves)
        return self._exported_choice(waves, start, length, (*spans, None))

    def _exported_choice(
        self,
        waves: torch.Tensor,
        start: torch.Tensor,
        length: torch.Tensor,
        choices: tuple[int | None, ...],
    ) -> torch.Tensor:
        """The first of `choices` (spans in frames, None for the whole window) that holds
        `length` frames, by a balanced tree of conditions, which the exporter traces faster
        than a chain of them (`best` with three spans: 55 s against 64 s on the 2-core VM)."""
        if len(choices) == 1:
            if choices[0] is None:
                image = self.log_mel(self.exported_power(waves))
                return self._embed_whole(image.contiguous(memory_format=torch.channels_last))
            return self._embed_sounding(waves, start, choices[0], exported=True)
        low, high = choices[: len(choices) // 2], choices[len(choices) // 2 :]
        # Both branches of a condition must lay their result out alike: contiguous.
        return torch.cond(
            length <= low[-1],
            lambda w, s, n: self._exported_choice(w, s, n, low).contiguous(),
            lambda w, s, n: self._exported_choice(w, s, n, high).contiguous(),
            (waves, start, length),
        )

    def _embed_sounding(
        self, waves: torch.Tensor, start: torch.Tensor, length: int, exported: bool = False
    ) -> torch.Tensor:
        """The embedding from frames [start, start + length) alone (`start` a 0-d tensor), their
        samples gathered from the waves with zeros beyond them: every other frame must be
        silent. `exported`: in a graph being exported, the spectrum by `exported_power` and the
        quiet rows beside the span (inside an export's conditions, neither `power` nor
        `_convolve_beside` can tell that it is being exported)."""
        frames = SpeechEmbedding.image_frames(waves.shape[-1])
        before = STRIDE_FRAMES * HOP  # a span starts at most 7 frames before the first
        padded = nn.functional.pad(waves, (before, length * HOP + N_FFT))
        samples = torch.arange((length - 1) * HOP + N_FFT, device=waves.device)
        segment = padded.index_select(1, samples + (start * HOP + before))
        power = self.exported_power(segment) if exported else self.power(segment)
        image, floor = self._log_mel_and_floor(power)
        image = image.contiguous(memory_format=torch.channels_last)
        # A frame of zero samples, as `log_mel` makes it: MEL_FLOOR in dB, or the clip's floor.
        silent = 10.0 / math.log(10.0) * torch.full_like(floor, MEL_FLOOR).log()
        quiet = torch.maximum(silent, floor) / 10.0 + 2.0
        quiet = quiet.expand(-1, -1, 1, N_MELS)
        return self._embed_frames(image, quiet, start, frames, exported)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export() and self.skip_silence:
            return self._exported(waves, EXPORTED_SPANS)
        if self.skip_silence and not self.training and not torch.jit.is_tracing():
            # Out of training, windows are centred clips in zeros: the spectrum too is
            # computed only where the batch has sound, as an export computes it.
            start, length = _sounding_span(waves)
            frames = SpeechEmbedding.image_frames(waves.shape[-1])
            if not _runs_whole(int(length), frames):
                return self._embed_sounding(waves, start, int(length))
        return self.embed(self.log_mel(self.power(waves)))

    def convolutions(self) -> list[nn.Conv2d]:
        """The network's CONVOLUTIONS (20) convolutions, input first."""
        return [m for m in self.network if isinstance(m, nn.Conv2d)]

    def top_start(self, count: int) -> int:
        """Where in `network` the top made of the last `count` convolutions begins (its
        length for 0): `network[:i]` is the frozen bottom, `network[i:]` the top."""
        if not 0 <= count <= CONVOLUTIONS:
            raise ValueError(f"count must be in [0, {CONVOLUTIONS}], got {count}")
        if count == 0:
            return len(self.network)
        positions = [i for i, m in enumerate(self.network) if isinstance(m, nn.Conv2d)]
        return positions[len(positions) - count]

    def unfreeze_last(self, count: int) -> None:
        """Let the last `count` convolutions learn (0: none).

        The top of the network is where it turns sounds into what it was trained to tell
        apart (keywords, not digits); its first layers are generic spectro-temporal filters.
        Training only the top keeps the cost small (for a 2.3 s window the last five
        convolutions see a grid of 65 x 2 where the first sees 304 x 32) and keeps what the
        broad corpus taught the bottom.
        """
        self.network[self.top_start(count) :].requires_grad_(True)

    @torch.no_grad()
    def load_pinned(self, weights_dir: str | Path) -> None:
        """The pinned pretrained weights, downloaded into `weights_dir` on first use."""
        from sdc.pretrained import fetch

        folder = fetch.weight_files(Path(weights_dir))
        self.load_onnx(
            fetch.read_initializers(folder / "melspectrogram.onnx"),
            fetch.read_initializers(folder / "embedding_model.onnx"),
        )

    def load_onnx(
        self, melspectrogram: dict[str, torch.Tensor], embedding: dict[str, torch.Tensor]
    ) -> None:
        """Copy the weights from openWakeWord's two ONNX graphs (their initializers by name)."""
        self.stft_real.copy_(melspectrogram["0.stft.conv_real.weight"])
        self.stft_imag.copy_(melspectrogram["0.stft.conv_imag.weight"])
        self.mel.copy_(melspectrogram["1.melW"])
        check_front_end(self)
        convs = self.convolutions()
        for i, conv in enumerate(convs[:-1]):
            name = "model/conv2d" + (f"_{i}" if i else "") + "/Conv2D"
            conv.weight.copy_(embedding[f"{name}_weights_fused_bn"])
            conv.bias.copy_(embedding[f"{name}_bias_fused_bn"])
        convs[-1].weight.copy_(embedding[f"model/conv2d_{len(convs) - 1}/Conv2D/ReadVariableOp:0"])


SPAN_ALIGN = 4
"""`_heard_spans` start at 8k + 4 and are 8n + 4 frames long: the one alignment (mod 8) at which
each of the network's three 2x2 poolings meets an even start and an even length."""
EXPORTED_SPANS = (60, 76, 148)
"""The spans (frames) an exported graph has ready: they hold 81%, 96% and 99.9% of FSDD's clips,
centred, heard at `best`'s speeds (the same at five, 0.925-1.075). A 60-frame span took `best`'s
export from 382 to 425 clips/s (2-core VM); 52 or 68 frames as well gained nothing, and each
span adds a copy of the network."""


@contextmanager
def whole_network(model: nn.Module) -> Iterator[None]:
    """Every speech embedding in `model` runs its whole network, silence included: for an
    8-bit export, whose quantizer cannot reach into the conditional branches of
    `embed_heard`'s graph."""
    embeddings = {m: m.skip_silence for m in model.modules() if isinstance(m, SpeechEmbedding)}
    for embedding in embeddings:
        embedding.skip_silence = False
    try:
        yield
    finally:
        for embedding, skip in embeddings.items():
            embedding.skip_silence = skip


def _heard_spans(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each clip's quietest value (B, 1, 1, 1), and the first frame (B,) and the length (B,)
    of a span that holds every frame where the clip differs from it, aligned as SPAN_ALIGN
    says (the first frame may lie up to 7 frames before the image)."""
    floor = image.amin(dim=(-2, -1), keepdim=True)
    heard = (image != floor).any(dim=-1).flatten(1)
    frames = image.shape[-2]
    index = torch.arange(frames, device=image.device)
    first = torch.where(heard, index, frames).amin(dim=1)
    first = torch.where(first < frames, first, frames // 2)  # none heard: any frame will do
    stop = torch.maximum(torch.where(heard, index + 1, 0).amax(dim=1), first + 1)
    return (floor, *_aligned(first, stop))


def _runs_whole(span: int, frames: int) -> bool:
    """Whether clips that need `span` of an image's `frames` frames run the whole network:
    too little quiet to pay for the bookkeeping."""
    return span > frames // 2


def _length_groups(lengths: list[int], frames: int) -> list[tuple[list[int], int]]:
    """The batch's clips (indices) in at most two groups, each with the span (frames) its
    longest clip needs: the split that costs the network least, if it saves a fifth.

    A network over a span costs about its length plus half the network's reach in each layer
    (CONTEXT_FRAMES), over the whole image its frames less that; a batch of clips in silence
    with a few noisy ones is two groups, the noisy ones run whole.
    """

    def cost(span: int) -> int:
        if _runs_whole(span, frames):
            return frames - CONTEXT_FRAMES // 2
        return span + CONTEXT_FRAMES // 2

    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    ranked = [lengths[i] for i in order]
    longest = ranked[-1]
    best, split = len(ranked) * cost(longest), len(ranked)
    for i in range(1, len(ranked)):
        if ranked[i] == ranked[i - 1]:
            continue
        total = i * cost(ranked[i - 1]) + (len(ranked) - i) * cost(longest)
        if total < best:
            best, split = total, i
    if split == len(ranked) or best > 0.8 * len(ranked) * cost(longest):
        return [(list(range(len(lengths))), longest)]
    return [(order[:split], ranked[split - 1]), (order[split:], longest)]


def _sounding_span(waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A first frame and length as `_heard_spans` gives them, for the whole batch, from the
    samples: the frames whose analysis window reads a sample that is not zero in any wave of
    the batch (every other frame is silent, so at the floor), aligned alike."""
    samples = waves.shape[-1]
    if not (torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()):  # eager: through numpy
        stretch = sound_stretch(waves) or (samples, 0)  # none: an empty stretch
        first_sample, stop_sample = torch.tensor(stretch, device=waves.device).unbind()
        return _frames_reading(first_sample, stop_sample, samples)
    sound = (waves != 0).any(dim=0)
    index = torch.arange(samples, device=waves.device)
    first_sample = torch.where(sound, index, samples).amin(dim=0)
    stop_sample = torch.where(sound, index + 1, 0).amax(dim=0)
    return _frames_reading(first_sample, stop_sample, samples)


def _frames_reading(
    first_sample: torch.Tensor, stop_sample: torch.Tensor, samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`_sounding_span` of waves of `samples` samples whose sound is samples
    [first_sample, stop_sample) (0-d tensors; empty: no sound)."""
    frames = SpeechEmbedding.image_frames(samples)
    # Frame j reads samples [j * HOP + WINDOW_TAPS.start, j * HOP + WINDOW_TAPS.stop).
    first = ((first_sample - WINDOW_TAPS.stop).div(HOP, rounding_mode="floor") + 1).clamp_min(0)
    stop = (stop_sample - 1 - WINDOW_TAPS.start).div(HOP, rounding_mode="floor") + 1
    silent = first_sample >= stop_sample
    first = torch.where(silent, frames // 2, first)  # none heard: any frame will do
    stop = torch.where(silent, first + 1, stop.clamp_max(frames))
    return _aligned(first, stop)


def _aligned(first: torch.Tensor, stop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first frame and length of the span aligned as SPAN_ALIGN says that holds frames
    [first, stop)."""
    start = (first - SPAN_ALIGN).div(8, rounding_mode="floor") * 8 + SPAN_ALIGN
    length = (stop - start - SPAN_ALIGN + 7).div(8, rounding_mode="floor") * 8 + SPAN_ALIGN
    return start, length


def frames_after(modules: nn.Sequential, frames: int) -> int:
    """The time positions `modules` (a stretch of the network) make of `frames`."""
    for module in modules:
        if isinstance(module, nn.Conv2d):
            frames -= module.kernel_size[0] - 1
        elif isinstance(module, nn.MaxPool2d):
            size = module.kernel_size
            frames //= size if isinstance(size, int) else size[0]
    return max(0, frames)


def _frames_at(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`x` (B, C, T, F) at the time positions `index`: (n,) for every clip, or (B, n) each
    clip its own."""
    if index.dim() == 1:
        return x.index_select(2, index)
    return x.gather(2, index[:, None, :, None].expand(-1, x.shape[1], -1, x.shape[3]))


def _convolve_beside(
    conv: nn.Conv2d, x: torch.Tensor, quiet: torch.Tensor, exported: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """`conv` over `x` (B, C, T, F) with the quiet column (B, C, 1, F) on every side in time,
    as far as the kernel reaches, and the quiet column's own output.

    `exported`: the quiet rows are put beside `x` instead. The in-place additions below export
    as scatters with their index arithmetic, and made `best`'s export half again as slow
    under ONNX Runtime (one clip 5.2 -> 8.0 ms).
    """
    weight, bias = conv.weight, conv.bias
    reach = conv.kernel_size[0] - 1
    bands = (0, conv.padding[1])
    if exported:
        if reach == 0:
            return conv(x), nn.functional.conv2d(quiet, weight, bias, 1, bands)
        return conv(_beside(quiet, x, reach, reach)), nn.functional.conv2d(
            quiet, weight.sum(dim=2, keepdim=True), bias, 1, bands
        )
    # What the quiet column gives each output row that reads it (`_quiet_kernels`), then the
    # network over x with zero rows in place of the quiet ones, and those shares added: no copy
    # of x.
    matrix, shares_bias = _quiet_kernels(conv)
    shares = _along_bands(quiet, matrix, shares_bias, conv.kernel_size[1])
    shares = shares.unflatten(-1, (2 * reach + 1, -1)).permute(0, 2, 3, 1)  # (B, rows, C, F)
    if reach == 0:
        return conv(x), shares[:, 0].unsqueeze(2)
    out = nn.functional.conv2d(x, weight, bias, 1, (reach, conv.padding[1]))
    length = x.shape[-2]
    for i in range(reach):
        out[:, :, i] += shares[:, i]
        out[:, :, length + i] += shares[:, reach + i]
    return out, shares[:, 2 * reach].unsqueeze(2)


def _quiet_kernels(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What the quiet column (one value per channel and band) gives each output row of `conv`
    that reads it, as one matrix (width x C_in, rows x C_out) for `_along_bands`, and its bias.

    With zero padding of `reach` rows, output row i < reach reads quiet rows with the first
    reach - i taps; row length + i, with the taps from reach - i on; the quiet column's own
    output, with all (the only row of a convolution one frame tall). Kept on the module while
    no gradient is taken (inference), as long as the weights do not change: making them took
    7% of `best`'s time for one clip on one thread.
    """
    weight, bias = conv.weight, conv.bias
    caching = not torch.is_grad_enabled()
    # Kept with the very weight and bias tensors they came from, and their versions.
    versions = (weight._version, None if bias is None else bias._version)
    cached = getattr(conv, "_quiet_kernels", None)
    if caching and cached and cached[0] is weight and cached[1] is bias and cached[2] == versions:
        return cached[3]
    reach = conv.kernel_size[0] - 1
    taps = weight.cumsum(dim=2)  # taps[:, :, j]: the sum of taps 0..j
    total = taps[:, :, -1:]
    kernels = [taps[:, :, reach - 1 - i : reach - i] for i in range(reach)]
    kernels += [total - taps[:, :, reach - 1 - i : reach - i] for i in range(reach)]
    kernels.append(total)
    stacked = torch.cat(kernels)[:, :, 0]  # (rows x C_out, C_in, width)
    matrix = stacked.permute(2, 1, 0).flatten(0, 1)  # row (tap, c_in) of the band window
    shares_bias = None
    if bias is not None:
        shares_bias = torch.cat([bias.new_zeros(2 * reach * len(bias)), bias])
    result = (matrix.contiguous(), shares_bias)
    if caching:
        conv._quiet_kernels = (weight, bias, versions, result)
    return result


def _along_bands(
    column: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor | None, width: int
) -> torch.Tensor:
    """A convolution `width` bands wide (padded by width // 2) over a column (B, C, 1, F), as
    one matrix product: (B, F, N) for a `matrix` (width x C, N). A convolution call on a
    column costs 30-100 us on one thread whatever its size: over the network's 21, a fifth of
    `best`'s time for one clip (1.8 of 9.1 ms); as products, 0.8 ms."""
    rows = column.permute(0, 2, 3, 1).flatten(1, 2)  # (B, F, C)
    if width > 1:
        pad = width // 2
        padded = nn.functional.pad(rows, (0, 0, pad, pad))
        bands = rows.shape[1]
        rows = torch.cat([padded[:, tap : tap + bands] for tap in range(width)], dim=-1)
    if bias is None:
        return torch.matmul(rows, matrix)
    return torch.addmm(bias, rows.flatten(0, 1), matrix).unflatten(0, rows.shape[:2])


def _beside(column: torch.Tensor, x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """`x` (B, C, T, F) with `left` and `right` copies of `column` (B, C, 1, F) along time."""
    parts = [column.expand(-1, -1, left, -1), x, column.expand(-1, -1, right, -1)]
    return torch.cat(parts, dim=2).contiguous(memory_format=torch.channels_last)


def windowed_dft(window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The STFT's kernels (257, 1, 512) for `window`: its cosine and minus-sine rows."""
    n = torch.arange(N_FFT, dtype=torch.float64)
    k = torch.arange(N_FFT // 2 + 1, dtype=torch.float64).unsqueeze(1)
    angle = 2 * torch.pi * k * n / N_FFT
    window = window.to(torch.float64)
    return (
        (torch.cos(angle) * window).unsqueeze(1).float(),
        (-torch.sin(angle) * window).unsqueeze(1).float(),
    )


def check_front_end(embedding: SpeechEmbedding) -> None:
    """Refuse front-end weights that `power` would not compute faithfully: kernels that are
    not a windowed DFT (the FFT assumes they are), or weight outside MEL_BINS and WINDOW_TAPS
    (the export leaves it out)."""
    real, imag = windowed_dft(embedding.stft_real[0, 0])
    error = max((embedding.stft_real - real).abs().max(), (embedding.stft_imag - imag).abs().max())
    faithful = error <= 1e-5 * real.abs().max()
    outside_bins = torch.ones(N_FFT // 2 + 1, dtype=torch.bool)
    outside_bins[MEL_BINS] = False
    outside_taps = torch.ones(N_FFT, dtype=torch.bool)
    outside_taps[WINDOW_TAPS] = False
    if not faithful or embedding.mel[outside_bins].any() or real[0, 0, outside_taps].any():
        raise ValueError(
            "speech embedding: the STFT kernels are not a windowed DFT, or weight lies "
            f"outside bins {MEL_BINS.start}-{MEL_BINS.stop - 1} and taps "
            f"{WINDOW_TAPS.start}-{WINDOW_TAPS.stop - 1}: not the pinned weights"
        )
