"""The painter: declarative image specs (`specs`) and their deterministic renderer (`render`).

Nothing is imported here, so reading a spec does not load the renderer's imaging stack.
"""
