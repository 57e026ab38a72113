"""The course's machinery: widgets, the classroom (student edition, autograding), the Chinese edition, the website, the README pictures and the benchmark."""
