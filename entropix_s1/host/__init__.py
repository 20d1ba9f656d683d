"""host layer."""
