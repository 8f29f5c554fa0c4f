"""Models in from NVlabs pickles (safely, no code from the file runs) and out to ONNX / TorchScript /
NVlabs-named safetensors. See docs/interop.md."""
