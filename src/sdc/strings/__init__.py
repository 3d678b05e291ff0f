"""Digit strings said without pauses (PINs, phone numbers): a reader that needs no pauses.

`synthesis` joins isolated digits into strings to learn from, `reader` is the model (the
pretrained speech embedding's frames, a small convolutional network over them, CTC), `train` the
`sdc strings` command: leave-one-speaker-out folds with their string tests, and the final
model; `recognizer` lets `sdc transcribe` use such a checkpoint.
"""
