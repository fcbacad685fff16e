"""STAR training: benchmark readers, augmentation, losses, the training loop and evaluation."""
