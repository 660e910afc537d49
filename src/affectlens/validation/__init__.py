"""The paper's checks for an emotion-vectors artifact (``affectlens validate``).

Each module is one check with pure functions on tensors / arrays (unit-testable without a
model) plus, where a model is needed, a thin function that reads activations:

- :mod:`classification`: held-out story classification per layer (top-1 / top-5, clusters).
- :mod:`geometry`: PCA of the vectors and its correlation with human valence / arousal norms.
- :mod:`clusters`: seeded numpy k-means (k-means++ init) and a cosine heatmap.
- :mod:`logit_lens`: the vectors read through the final norm and unembedding.
- :mod:`stability`: split-half reliability of the vectors on the train split.
- :mod:`report`: ``report.json`` and a self-contained ``index.html``.
"""
