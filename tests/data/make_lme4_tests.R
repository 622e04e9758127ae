# Reference p-values of tests of H0: beta_j = null_j for tests/models/test_reml_tests.py.
#
# Run from the repository root:  Rscript tests/data/make_lme4_tests.R
# Writes tests/data/lme4_tests.toml.  Needs lme4, lmerTest and pbkrtest (Debian:
# apt-get install r-base-core r-cran-lme4 r-cran-lmertest r-cran-pbkrtest).
#
# Per case (a data file, a formula, null values) and per fixed effect:
#   z      (estimate - null) / SE against N(0, 1)
#   t      the same against t with K - p df (K groups, p fixed effects)
#   satterthwaite, kenward-roger
#          lmerTest::contest1D(m, L, rhs = null, ddf = ...): Satterthwaite df with the
#          model SE; Kenward-Roger (pbkrtest) adjusted SE and df.  For an ML fit
#          (method = "ML") lmerTest refuses Kenward-Roger; pbkrtest refits by REML, so the
#          reference is the REML fit's.
#   lrt    anova(m0, m1) of ML fits: m1 the full model, m0 = update(m1, . ~ . - x_j +
#          offset(null_j * x_j)) (the random part is kept, as update does; for the
#          intercept ". ~ . - 1" and a constant offset).

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
})

here <- "tests/data"
num <- function(x) {
  ifelse(is.na(x), "nan", ifelse(is.infinite(x), ifelse(x > 0, "inf", "-inf"),
                                 sprintf("%.12g", x)))
}
arr <- function(x) paste0("[", paste(num(x), collapse = ", "), "]")
strs <- function(x) paste0("[", paste(sprintf("\"%s\"", x), collapse = ", "), "]")

reference <- function(name, file, formula, group, null, method = "REML") {
  d <- read.csv(file.path(here, file))
  d[[group]] <- factor(d[[group]])
  reml <- method == "REML"
  m <- lmerTest::lmer(as.formula(formula), d, REML = reml,
                      control = lmerControl(optimizer = "bobyqa"))
  m_reml <- if (reml) m else update(m, REML = TRUE)
  beta <- fixef(m)
  terms <- names(beta)
  p <- length(beta)
  K <- nlevels(d[[group]])
  se <- sqrt(diag(as.matrix(vcov(m))))
  z <- (beta - null) / se
  one <- function(j, ddf, model) {
    L <- numeric(p); L[j] <- 1
    lmerTest::contest1D(model, L, rhs = null[j], ddf = ddf)
  }
  satt <- do.call(rbind, lapply(seq_len(p), one, ddf = "Satterthwaite", model = m))
  kr <- do.call(rbind, lapply(seq_len(p), one, ddf = "Kenward-Roger", model = m_reml))
  m1 <- lmerTest::lmer(as.formula(formula), d, REML = FALSE,
                       control = lmerControl(optimizer = "bobyqa"))
  n <- nrow(d)
  lrt <- t(sapply(seq_len(p), function(j) {
    drop <- if (terms[j] == "(Intercept)") "1" else terms[j]
    off <- if (null[j] == 0) "" else if (terms[j] == "(Intercept)") {
      sprintf(" + offset(rep(%.17g, %d))", null[j], n)
    } else {
      sprintf(" + offset(%.17g * %s)", null[j], terms[j])
    }
    m0 <- update(m1, as.formula(sprintf(". ~ . - %s%s", drop, off)))
    a <- anova(m0, m1)
    c(a$Chisq[2], a$`Pr(>Chisq)`[2], deviance(m0), deviance(m1))
  }))
  c(
    "",
    "[[case]]",
    sprintf("name = \"%s\"", name),
    sprintf("data = \"%s\"", file),
    sprintf("formula = \"%s\"", formula),
    sprintf("group = \"%s\"", group),
    sprintf("method = \"%s\"", method),
    sprintf("terms = %s", strs(terms)),
    sprintf("null = %s", arr(null)),
    sprintf("estimate = %s", arr(beta)),
    sprintf("se = %s", arr(se)),
    sprintf("z = %s", arr(z)),
    sprintf("p_z = %s", arr(2 * pnorm(-abs(z)))),
    sprintf("df_t = %s", arr(rep(K - p, p))),
    sprintf("p_t = %s", arr(2 * pt(-abs(z), K - p))),
    sprintf("t_satterthwaite = %s", arr(satt[, "t value"])),
    sprintf("df_satterthwaite = %s", arr(satt[, "df"])),
    sprintf("p_satterthwaite = %s", arr(satt[, "Pr(>|t|)"])),
    sprintf("se_kr = %s", arr(kr[, "Std. Error"])),
    sprintf("t_kr = %s", arr(kr[, "t value"])),
    sprintf("df_kr = %s", arr(kr[, "df"])),
    sprintf("p_kr = %s", arr(kr[, "Pr(>|t|)"])),
    sprintf("lrt = %s", arr(lrt[, 1])),
    sprintf("p_lrt = %s", arr(lrt[, 2])),
    sprintf("deviance_reduced = %s", arr(lrt[, 3])),
    sprintf("deviance_full = %s", num(lrt[1, 4]))
  )
}

cases <- list(
  list("sleepstudy_slopes", "sleepstudy.csv", "Reaction ~ Days + (Days | Subject)",
       "Subject", c(0, 0)),
  list("sleepstudy_slopes_null", "sleepstudy.csv", "Reaction ~ Days + (Days | Subject)",
       "Subject", c(250, 10)),
  list("sleepstudy_slopes_ml", "sleepstudy.csv", "Reaction ~ Days + (Days | Subject)",
       "Subject", c(250, 10), "ML"),
  list("sleepstudy_intercept", "sleepstudy.csv", "Reaction ~ Days + (1 | Subject)",
       "Subject", c(0, 0)),
  list("sleepstudy_intercept_null", "sleepstudy.csv", "Reaction ~ Days + (1 | Subject)",
       "Subject", c(250, 10)),
  list("cluster_trial", "cluster_trial.csv", "y ~ treat + x + (1 | cluster)",
       "cluster", c(0, 0, 0)),
  list("cluster_trial_null", "cluster_trial.csv", "y ~ treat + x + (1 | cluster)",
       "cluster", c(0.2, 0.5, -0.1))
)
body <- unlist(lapply(cases, function(a) do.call(reference, a)))
header <- c(
  "# Tests of H0: beta_j = null_j for tests/models/test_reml_tests.py.",
  sprintf("# Made by `Rscript tests/data/make_lme4_tests.R` (from the repository root) with %s,",
          R.version.string),
  sprintf("# lme4 %s, lmerTest %s, pbkrtest %s (optimizer bobyqa).",
          packageVersion("lme4"), packageVersion("lmerTest"), packageVersion("pbkrtest")),
  "# What each key is: the script's header.  cluster_trial.csv: 8 clusters of 10, a",
  "# cluster-level 0/1 treatment and a row-level x, made by cluster_trial() of the test",
  "# module (numpy, seed 20250611)."
)
writeLines(c(header, body), file.path(here, "lme4_tests.toml"))
