"""Tributary's deterministic backend (runs inside the Cartesi machine and in host mode)."""
