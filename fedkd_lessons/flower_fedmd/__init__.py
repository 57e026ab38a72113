"""FedMD on Flower (lesson 6): the same parties as lesson 5, each in its own process, talking to a
server through a Flower SuperLink over the network (loopback here).

- :mod:`.protocol`: the messages' content, their size on the wire, when a round closes;
- :mod:`.server_app`: the ``ServerApp`` (subsets, consensus, bookkeeping);
- :mod:`.client_app`: the ``ClientApp`` (one party: digest, revisit, communicate);
- :mod:`.party_disk`: each party's state on its own disk between messages.

``pyproject.toml`` in this folder makes it a Flower app; :mod:`fedkd_lessons.flower_run` starts
the processes and runs it.
"""
