"""Tip evidence from physics: what a frame's own heights say of the tip that imaged it, on any
surface (:mod:`.echo`: a double tip; :mod:`.sharpness`: a blunt tip; :mod:`.linechange`: a tip
change) and against what the same area looked like before (:mod:`.memory`)."""
