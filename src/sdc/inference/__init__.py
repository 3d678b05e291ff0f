"""Using a trained model: a checkpoint or export in, a `Recognizer` out; predict, transcribe,
listen and export all go through it."""
