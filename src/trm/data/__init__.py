"""Datasets: the on-disk puzzle format, task builders (Sudoku, Maze, ARC) and samplers."""
