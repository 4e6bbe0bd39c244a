"""Data sets of CAC, one concern per module: config (datasets/config.json, checked), splits
(class splits), partition (train/val), normalization, sources and folder/safe_folder (the raw
data), trial (OpenSetData: one trial's subsets), augment (the augmentation spec), pipeline,
resident and warp (the batches)."""
