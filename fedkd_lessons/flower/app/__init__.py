"""FedMD on Flower (lesson 6): the same parties as lesson 5, each in its own process, talking to a
server through a Flower SuperLink over the network (loopback here).

- :mod:`.protocol`: the messages' content, their size on the wire, the checks of a reply, when a round closes;
- :mod:`.server_app`: the ``ServerApp`` (subsets, checked replies, consensus, bookkeeping);
- :mod:`.client_app`: the ``ClientApp`` (one party: digest, revisit, communicate);
- :mod:`.party_disk`: each party's state on its own disk between messages (weights, no pickled code);
- :mod:`.credentials`: the CA, the SuperLink's certificate and the SuperNodes' keys of one run;
- :mod:`.faults`: a party that misbehaves on purpose, for the fault-injection tests and the lesson.

``pyproject.toml`` in this folder makes it a Flower app; :mod:`fedkd_lessons.flower.launcher` starts
the processes and runs it.
"""
