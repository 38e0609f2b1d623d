"""Diffusion building blocks shared by the diffusion nodes: noise schedules and samplers."""
