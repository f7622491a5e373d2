/**
 * An empty ES module the child imports before it reports ready. The first file a process
 * imports brings up Node's ES module loader (~5 ms); paying that here, rather than inside
 * the first handler import, is what lets a warm spare serve a handler in ~1 ms.
 */
export const warmedUp = true;
