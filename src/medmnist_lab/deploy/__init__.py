"""Using a trained model outside its run folder: predict on image files, explain, export, model cards.

- images.py     image/DICOM/npz files -> the uint8 arrays a model was trained on
- predictor.py  a checkpoint or an exported .onnx as images -> probabilities
- predict.py    folders of files -> a prediction table, failures listed per file
- explain.py    Grad-CAM overlays (the `explain` extra: grad-cam)
- export.py     ONNX / TorchScript files that describe themselves
- card.py       model_card.md / .json beside a run's checkpoints
- calibrate.py  calibration.json beside a checkpoint: scaling and conformal sets fitted on val
"""
