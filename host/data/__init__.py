"""Frames and labels in and out, with numpy and Pillow only (the bottom layer).

- :mod:`~sentei.host.data.preprocess` -- read images, bring a frame to the model's input;
- :mod:`~sentei.host.data.visualize` -- colour maps, blended overlays, PNG writing;
- :mod:`~sentei.host.data.camvid` -- the CamVid data set: splits on disk, class names and colours;
- :mod:`~sentei.host.data.metrics` -- the confusion matrix, IoU and pixel accuracy.
"""
