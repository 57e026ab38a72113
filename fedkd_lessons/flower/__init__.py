"""FedMD as real processes on Flower: the Flower app (app/) and the launcher that starts it (lesson 6)."""
