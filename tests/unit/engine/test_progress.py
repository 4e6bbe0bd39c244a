"""engine/progress.py: where an epoch's progress lines fall, and what they say."""


def test_progress_marks_are_the_first_steps_past_each_tenth():
    from engine.progress import progress_line, progress_marks

    assert progress_marks(25) == [3, 5, 8, 10, 13, 15, 18, 20, 23, 25]  # ceil(25 k / 10)
    assert progress_marks(100) == list(range(10, 101, 10))
    assert progress_marks(4) == [1, 2, 3, 4]  # short epochs: a line per step
    assert progress_line(2, 13, 25, 0.123456, 260, 2.0) == "epoch 2: 52% (13/25 steps), loss 0.1235, 130 images/s"

