"""The tax knowledge base: curated entries (``entries/*.yml``), their schema and lint, and hybrid retrieval
(dense encoder + BM25, fused) over a versioned FAISS index. Pure library code: the service app serves it and the
``./taxbot kb`` commands drive it. Nothing heavy is imported here."""
