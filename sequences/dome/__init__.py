"""The dome following the telescope: where the slit must be (`geometry`), and the task that
keeps it there during a run (`slaving`)."""
