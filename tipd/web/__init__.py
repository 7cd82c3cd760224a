"""``tipd web``: one local web application beside a running daemon.

* a live page (``/``): each microscope's frame drawn line by line as the scan goes, the current
  state with its confidences and familiarity, a timeline of states, actions, refusals and
  health, advisory or live, and a Stop button (an operator hold) with its release;
* a labelling page (``/label``): archived frames, the unfamiliar and least certain first, one
  key per class of the model's taxonomy, undo; labels land in a folder that
  ``tipd train --data DIR --init-from MODEL`` takes as it is;
* ``/metrics`` for Prometheus, and a webhook (Slack, Mattermost, Zulip) when a microscope
  needs an operator, tipd is blind, the stop file is present or the controller stops answering.

Everything comes from the daemon's event stream (:mod:`tipd.web.hub`), its archive
(:mod:`tipd.archive`) and its operator endpoint, never from inside the daemon.
"""
