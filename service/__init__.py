"""HTTP service behind the tax-service assistant: identity verification, tax records, tickets, hand-offs."""
__version__ = "0.1.0"
