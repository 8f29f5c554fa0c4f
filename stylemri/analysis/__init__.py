"""What researchers do with a trained generator beyond sampling: style mixing, interpolation,
projection of real scans, class-direction edits, style-space embeddings, real-vs-generated comparison.

One module per concern; each returns arrays/figures and leaves printing to the CLI.
"""
