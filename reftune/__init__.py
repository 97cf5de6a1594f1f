"""reftune: Reinforced Fine-Tuning (ReFT, Luong et al., ACL 2024) for reasoning with checkable answers."""

__version__ = "0.1.0"
