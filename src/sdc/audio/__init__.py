"""Reading audio, the feature front ends, and the training-time augmentation."""
