"""Face detection, the first stage of source -> detect -> crop: the BlazeFace detector (:mod:`.blazeface`), the
photo-mode search for every face in a still image (:mod:`.photo_search`) and box geometry (:mod:`.boxes`)."""
