"""Stand-in weights for the speech embedding, for tests that must not download the real ones."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from sdc.pretrained.speech_embedding import (
    N_FFT,
    WINDOW_TAPS,
    SpeechEmbedding,
    check_front_end,
    windowed_dft,
)


def stand_in(embedding: SpeechEmbedding, seed: int = 0) -> SpeechEmbedding:
    """Weights shaped like the real ones, for tests that must not download: a DFT with a
    25 ms Hann window centred in its 512 taps, mel filters from 60 Hz to 3.8 kHz (the real
    ones' bins), seeded random convolutions."""
    window = torch.zeros(N_FFT, dtype=torch.float64)
    taps = WINDOW_TAPS.stop - WINDOW_TAPS.start
    window[WINDOW_TAPS] = torch.hann_window(taps + 1, periodic=False, dtype=torch.float64)[1:]
    fbanks = torchaudio.functional.melscale_fbanks(N_FFT // 2 + 1, 60.0, 3800.0, 32, 16000)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        real, imag = windowed_dft(window)
        embedding.stft_real.copy_(real)
        embedding.stft_imag.copy_(imag)
        embedding.mel.copy_(fbanks)
        check_front_end(embedding)
        for conv in embedding.network:
            if isinstance(conv, nn.Conv2d):
                fan_in = conv.weight[0].numel()
                scale = 1.5 / fan_in**0.5  # activations keep their size through 20 layers
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * scale)
                if conv.bias is not None:
                    conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator) * 0.1)
    return embedding
