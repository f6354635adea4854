"""Was this photo cropped? Self-supervised crop detection after "Dissecting Image Crops"
(generator.py: the data; model.py: thumbnail + patch branches and fusion; train.py: train-crops and
its scores; detector.py: the bundle, tag --crops and crops explain)."""
