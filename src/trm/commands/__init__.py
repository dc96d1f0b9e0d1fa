"""Sub-commands of the `trm` command line (see trm.cli)."""
