"""The paper's math as pure tensor functions: no model, no I/O."""
