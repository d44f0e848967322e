"""QR training (the QRRanker paper's recipe): group contrastive fine-tuning of the layers that feed the QR heads.

samples.py   training samples from the seed builders (JSONL, split by document)
loss.py      max-min normalisation to [0, 8] and the group contrastive loss
scores.py    differentiable QR scores: question-row attention of the selected heads, with gradients
scope.py     which parameters train (full | qr-layers | lora)
checkpoint.py  resumable checkpoints (safetensors + JSON)
trainer.py   the loop: accumulation, checkpoints, validation, the output model directory
curve.py     the loss curve as SVG
"""
