"""``tipd reprocess``: a lab's archive judged again with another model, on Dask.

Every scan of the sources (the frame archive, any folder of scans in the formats tipd reads,
a journal's archived frames) goes through the daemon's own decision step (:mod:`tipd.decide`,
advisory: the policy and the safety gate say what they would have done, nothing is sent), on
the workers of a Dask cluster, into one Parquet table with a row per scan and model
(:mod:`.table`). Work goes out in batches of one microscope's consecutive frames, so the
sample's memory (:mod:`tipd.physics.memory`) and the policy see each batch as the daemon saw
the frames; each batch is written as a part of its own the moment it is done, so an
interrupted run loses nothing written and a second run goes on where the first stopped
(:mod:`.run`). :mod:`.report` says, microscope by microscope, what each model's policy would
have decided.

Modules: :mod:`.sources` (which scans, in which batches), :mod:`.work` (a worker's side: the
models loaded once, a batch judged), :mod:`.table` (the rows and the Parquet parts),
:mod:`.run` (the cluster, the progress, the resumption), :mod:`.report` (the comparison).
"""
