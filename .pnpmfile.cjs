// pnpm hooks (pnpm >= 10.28). beforePacking shapes the package.json that `pnpm pack` and
// `pnpm publish` put in a tarball; the package.json files in the repository stay as they are.
module.exports = {
  hooks: {
    // devDependencies are for working on this repository (the test tools, the conformance suite
    // every backend's tests run): a consumer never installs them.
    beforePacking(manifest) {
      delete manifest.devDependencies;
      return manifest;
    },
  },
};
