"""Scale-out: render one graph on many processes or machines (Ray), with the frames a single
run makes. ``plan`` splits the output into segments with their halos, ``worker`` renders a
segment with the shared engine, ``assemble`` joins segments, ``backend.run_on_ray`` drives it.
See docs/scale-out.md."""
