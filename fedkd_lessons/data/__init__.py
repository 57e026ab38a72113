"""The data: scikit-learn's digits, their partition among clients, the rendered letters, MNIST and EMNIST."""
