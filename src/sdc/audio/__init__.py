"""Reading audio, batched augmentation and the feature front end."""
