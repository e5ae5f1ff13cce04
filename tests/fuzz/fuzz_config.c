// fuzz_config.c — the YAML config parser (rd_config_parse_string: libyaml events -> rd_config,
// range checks, cross-field validation, path resolution) on arbitrary bytes.
#include "fuzz.h"

#include "rd/config.h"

#include <stdlib.h>

int rd_fuzz_check(const uint8_t *data, size_t size) {
    rd_config *cfg = malloc(sizeof *cfg);
    if (!cfg)
        return RD_ERR_NOMEM;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_config_parse_string((const char *)data, size, "fuzz.yaml", cfg, &eb);
    if (rc == RD_OK) // an accepted config must also resolve and print without trouble
        rc = rd_config_resolve(cfg, &eb);
    free(cfg);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rd_fuzz_check(data, size);
    return 0;
}
