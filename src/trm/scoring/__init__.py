"""Task-specific scoring of model predictions (ARC voting, pass@k and Kaggle submissions)."""
