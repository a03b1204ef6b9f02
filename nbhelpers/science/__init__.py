"""The paper's science, free of chapters, profiles, checkpoints and files (but explicit loaders and savers):

- ``mfa``: mixtures of factor analyzers (density, sampling, EM); ``mfa_files``: their files, checked on load;
- ``classifier`` and ``bounds``: the Bayes-optimal classifier of two MFAs and lower bounds on its robustness;
- ``theory``: exact distances to Bayes-optimal boundaries, and the paper's lemmas as experiments;
- ``attacks``: the paper's gradient attack and foolbox's minimum-L2 attacks;
- ``models``: the CNN, the linear and RBF SVMs, TRADES and the training loop;
- ``data``: the real images of the 15 tasks; ``datasets``: the MFA datasets built from them;
- ``report``: the robustness report of an attack.
"""
