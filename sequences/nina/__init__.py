"""Import N.I.N.A. Advanced Sequencer files (templates, whole sequences, target lists) into
our sequence documents, with a report of everything that did not carry over."""
